// Registers and logs in a fresh user through OPAQUE with the official npm client, and prints its
// access token: scripts/schemathesis uses it to test the authenticated routes.
// Usage: JIBBER_URL=http://127.0.0.1:PORT node token.mjs
import { freshPassword, freshUsername, login, register } from './helpers.mjs';

const username = freshUsername();
const password = freshPassword();
await register(username, password);
const { data } = await login(username, password);
process.stdout.write(`${data.accessToken}\n`);
