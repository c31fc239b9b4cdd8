import { useEffect, useState } from 'react';
import { ApiError } from '../lib/api';
import type { PublicUser } from '../lib/types';
import { searchContacts, startChat } from '../engine';
import { Avatar, name } from './common';

export function NewChat({ onClose }: { onClose: () => void }) {
  const [search, setSearch] = useState('');
  const [users, setUsers] = useState<PublicUser[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live = true;
    const t = setTimeout(() => {
      searchContacts(search.trim())
        .then((u) => live && (setUsers(u), setError(null)))
        .catch((e) => live && setError(e instanceof ApiError && e.code === 'NETWORK' ? 'The server cannot be reached.' : String(e.message ?? e)));
    }, 200);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [search, attempt]);

  async function pick(u: PublicUser) {
    try {
      await startChat(u);
      onClose();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }

  return (
    <div className="new-chat" data-testid="contacts">
      <div className="bar">
        <input
          autoFocus
          placeholder="Search people"
          aria-label="Search people"
          value={search}
          onChange={(e) => setSearch(e.target.value)}
          data-testid="contact-search"
        />
        <button className="ghost small" onClick={onClose}>
          Cancel
        </button>
      </div>
      {error && (
        <p className="callout error" role="alert" data-testid="contacts-error">
          {error}{' '}
          <button className="link" onClick={() => setAttempt((a) => a + 1)} data-testid="contacts-retry">
            Retry
          </button>
        </p>
      )}
      {users?.length === 0 &&
        (search ? (
          <p className="callout" data-testid="no-match">
            Nobody called “{search}”.
          </p>
        ) : (
          <p className="callout" data-testid="no-users">
            No one else is here yet. Invite someone to sign up at <strong>{location.origin}</strong>, then start a chat.
          </p>
        ))}
      <ul className="contacts">
        {users?.map((u) => (
          <li key={u.id}>
            <button className="chat-item" onClick={() => void pick(u)} data-testid="contact" data-username={u.username}>
              <Avatar user={u} />
              <span className="chat-text">
                <strong>{name(u)}</strong>
                <span className="muted small">@{u.username}</span>
              </span>
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}
