import { useStore } from '../store';
import { AuthScreen } from './AuthScreen';
import { Shell } from './Shell';

/** WebCrypto (hence end-to-end encryption) exists only in secure contexts: HTTPS or localhost. */
export const secure = typeof window !== 'undefined' && window.isSecureContext && Boolean(globalThis.crypto?.subtle);

export function App() {
  const phase = useStore((s) => s.phase);
  if (!secure) {
    return (
      <main className="auth">
        <div className="auth-card" role="alert" data-testid="insecure">
          <h1>Jibber needs HTTPS</h1>
          <p>
            Browsers only allow the encryption Jibber uses on secure pages. Open this server over HTTPS (for example
            behind a reverse proxy with a TLS certificate), or as <strong>http://localhost</strong> on the machine that
            runs it.
          </p>
        </div>
      </main>
    );
  }
  if (phase === 'boot') {
    return (
      <div className="splash" data-testid="splash">
        <img src="/icon.svg" alt="" width={64} height={64} />
      </div>
    );
  }
  if (phase === 'ready') return <Shell />;
  return <AuthScreen expired={phase === 'expired'} />;
}
