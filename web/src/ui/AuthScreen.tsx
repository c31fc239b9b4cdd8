import { type FormEvent, useState } from 'react';
import { ApiError } from '../lib/api';
import { validateCredentials } from '../lib/auth';
import { logInAndStart, signUpAndStart } from '../engine';
import { useStore } from '../store';

const messages: Record<string, string> = {
  UNAUTHENTICATED: 'Wrong username or password.',
  CONFLICT: 'That username is taken. Choose another one.',
  RATE_LIMITED: 'Too many attempts. Wait a minute, then try again.',
  NETWORK: 'The server cannot be reached. Check your connection and try again.',
  DECRYPTION_FAILED: 'Your keys could not be opened with this password.',
};

export function AuthScreen({ expired }: { expired: boolean }) {
  const me = useStore((s) => s.me);
  const [mode, setMode] = useState<'login' | 'signup'>('login');
  const [username, setUsername] = useState(me?.username ?? '');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const invalid = mode === 'signup' ? validateCredentials(username, password) : null;
    if (invalid) return setError(invalid);
    setBusy(true);
    setError(null);
    try {
      await (mode === 'signup' ? signUpAndStart : logInAndStart)(username.trim(), password);
    } catch (err) {
      const code = err instanceof ApiError || (err instanceof Error && 'code' in err) ? (err as ApiError).code : '';
      setError(messages[code] ?? (err instanceof Error ? err.message : 'Something went wrong.'));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="auth">
      <form className="auth-card" onSubmit={submit} data-testid="auth-form">
        <div className="brand">
          <img src="/icon.svg" alt="" width={48} height={48} />
          <h1>Jibber</h1>
          <p className="muted">End-to-end-encrypted messages</p>
        </div>
        {expired && (
          <p className="callout warn" role="alert" data-testid="session-expired">
            Your session has expired. Log in again to continue — your messages and anything you were sending are kept on
            this device.
          </p>
        )}
        <div className="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={mode === 'login'} onClick={() => setMode('login')}>
            Log in
          </button>
          <button type="button" role="tab" aria-selected={mode === 'signup'} onClick={() => setMode('signup')} data-testid="tab-signup">
            Sign up
          </button>
        </div>
        <label>
          Username
          <input
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            required
            autoFocus
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={mode === 'signup' ? 'new-password' : 'current-password'}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {error && (
          <p className="callout error" role="alert" data-testid="auth-error">
            {error}
          </p>
        )}
        <button className="primary" type="submit" disabled={busy} data-testid="auth-submit">
          {busy ? 'Please wait…' : mode === 'signup' ? 'Create account' : 'Log in'}
        </button>
        <p className="muted small">
          Your password never leaves this device (OPAQUE), and your keys are unlocked with it here.
        </p>
      </form>
    </main>
  );
}
