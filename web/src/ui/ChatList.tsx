import { useState } from 'react';
import { logout, openChat } from '../engine';
import { sortChats } from '../model';
import { useStore } from '../store';
import { Avatar, formatTime, name } from './common';
import { Icon } from './icons';
import { NewChat } from './NewChat';

export function ChatList() {
  const chats = useStore((s) => s.chats);
  const me = useStore((s) => s.me);
  const active = useStore((s) => s.activeChatId);
  const presence = useStore((s) => s.presence);
  const typing = useStore((s) => s.typing);
  const connection = useStore((s) => s.connection);
  const [picking, setPicking] = useState(false);
  const list = sortChats(chats);

  return (
    <div className="chat-list">
      <header className="bar">
        <div className="me">
          {me && <Avatar user={me} />}
          <div>
            <strong data-testid="me">{me?.username}</strong>
            <span className={`conn ${connection}`} data-testid="connection">
              {connection === 'online' ? 'Connected' : connection === 'offline' ? 'Offline' : 'Connecting…'}
            </span>
          </div>
        </div>
        <div className="actions">
          <button className="icon" title="New chat" aria-label="New chat" onClick={() => setPicking(true)} data-testid="new-chat">
            <Icon name="edit" size={20} />
          </button>
          <button className="ghost small" onClick={() => void logout()} data-testid="logout">
            Log out
          </button>
        </div>
      </header>
      {picking && <NewChat onClose={() => setPicking(false)} />}
      {list.length === 0 && picking ? null : list.length === 0 ? (
        <div className="empty-list" data-testid="no-chats">
          <p>No chats yet.</p>
          <button className="primary" onClick={() => setPicking(true)}>
            Start a chat
          </button>
        </div>
      ) : (
        <ul className="chats" data-testid="chats">
          {list.map((c) => (
            <li key={c.id}>
              <button
                className={`chat-item ${c.id === active ? 'active' : ''}`}
                onClick={() => void openChat(c.id)}
                data-testid="chat-item"
                data-username={c.other.username}
              >
                <Avatar user={c.other} presence={presence[c.other.id]} />
                <span className="chat-text">
                  <span className="row">
                    <strong>{name(c.other)}</strong>
                    <time>{c.last ? formatTime(c.last.createdAt, true) : ''}</time>
                  </span>
                  <span className="row">
                    <span className="preview" data-testid="preview">
                      {typing[c.id] ? (
                        <em className="typing-text">typing…</em>
                      ) : c.last ? (
                        `${c.last.sender === me?.id ? 'You: ' : ''}${c.last.text ?? 'Message could not be decrypted'}`
                      ) : (
                        <span className="muted">No messages yet</span>
                      )}
                    </span>
                    {c.unread > 0 && (
                      <span className="badge" data-testid="unread">
                        {c.unread}
                      </span>
                    )}
                  </span>
                </span>
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
