import { useEffect, useState } from 'react';
import { b64decode } from '../lib/bytes';
import { displaySafetyNumber, safetyNumber } from '../lib/crypto';
import type { PublicUser } from '../lib/types';
import { acknowledgeKeyChange, contactKeys, myKeys } from '../engine';
import { useStore } from '../store';
import { name } from './common';

export function SafetyNumber({ user, onClose }: { user: PublicUser; onClose: () => void }) {
  const me = useStore((s) => s.me);
  const changed = useStore((s) => s.keyChanged[user.id] ?? false);
  const [digits, setDigits] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const mine = myKeys();
    const theirs = contactKeys(user.id)?.keys.at(-1);
    const idKey = theirs && b64decode(theirs.idKey);
    const signingKey = theirs && b64decode(theirs.signingKey);
    if (!me || !mine || !idKey || !signingKey) {
      setError('The keys for this contact are not known yet.');
      return;
    }
    safetyNumber({ userId: me.id, keys: mine }, { userId: user.id, keys: { idKey, signingKey } })
      .then(setDigits)
      .catch((e) => setError(String(e.message ?? e)));
  }, [me, user.id]);

  return (
    <div className="modal" role="dialog" aria-modal="true" aria-labelledby="safety-title" data-testid="safety">
      <div className="modal-card">
        <h2 id="safety-title">Safety number with {name(user)}</h2>
        {changed && (
          <p className="callout warn" role="alert" data-testid="safety-changed">
            {name(user)}’s keys changed since you first talked. Compare this new number with them in person or on a call.
          </p>
        )}
        <p className="muted small">
          If this number is the same on {name(user)}’s screen, nobody is intercepting your messages.
        </p>
        {error && <p className="callout error">{error}</p>}
        <pre className="safety-number" data-testid="safety-number">
          {digits ? displaySafetyNumber(digits).replace(/((?:\d{5} ){3}\d{5}) /g, '$1\n') : 'Computing…'}
        </pre>
        <div className="modal-actions">
          {changed && (
            <button className="primary" onClick={() => void acknowledgeKeyChange(user.id).then(onClose)} data-testid="safety-verified">
              I compared it: mark as verified
            </button>
          )}
          <button className="ghost" onClick={onClose} data-testid="safety-close">
            Close
          </button>
        </div>
      </div>
    </div>
  );
}
