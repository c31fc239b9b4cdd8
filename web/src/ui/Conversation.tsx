import { type KeyboardEvent, useEffect, useLayoutEffect, useRef, useState } from 'react';
import type { CachedMessage } from '../lib/db';
import { discard, loadDraft, loadOlder, openChat, retry, saveDraft, send, typing } from '../engine';
import { useStore } from '../store';
import { Avatar, formatTime, name } from './common';
import { Icon } from './icons';
import { SafetyNumber } from './SafetyNumber';

const EMPTY: CachedMessage[] = [];

function Status({ m }: { m: CachedMessage }) {
  const label = { sending: 'Sending', failed: 'Not sent', sent: 'Sent', delivered: 'Delivered', read: 'Read' }[m.status];
  const icon = ({ sending: 'clock', failed: 'alert', sent: 'check', delivered: 'checks', read: 'checks' } as const)[m.status];
  return (
    <span className={`status ${m.status}`} title={label} aria-label={label} data-testid="status" data-status={m.status}>
      <Icon name={icon} size={16} />
    </span>
  );
}

function Bubble({ m, mine }: { m: CachedMessage; mine: boolean }) {
  return (
    <li className={`msg ${mine ? 'mine' : 'theirs'} ${m.text === null ? 'undecryptable' : ''}`} data-testid="message" data-status={m.status} data-seq={m.seq}>
      <div className="bubble">
        {m.text === null ? (
          <span className="locked" data-testid="undecryptable">
            <Icon name="lock" size={14} /> This message could not be decrypted ({m.error ?? 'unknown error'}). It may have been tampered with, or sent
            with keys this device does not trust.
          </span>
        ) : (
          <span className="text" data-testid="text">
            {m.text}
          </span>
        )}
        <span className="meta">
          <time dateTime={m.createdAt}>{formatTime(m.createdAt)}</time>
          {mine && <Status m={m} />}
        </span>
      </div>
      {m.status === 'failed' && (
        <div className="failed" role="alert">
          Not sent{m.error ? `: ${m.error}` : ''}.{' '}
          <button className="link" onClick={() => void retry(m.tempMessageId)} data-testid="retry">
            Retry
          </button>{' '}
          <button className="link" onClick={() => void discard(m.tempMessageId)}>
            Delete
          </button>
        </div>
      )}
    </li>
  );
}

export function Conversation({ chatId }: { chatId: string }) {
  const chat = useStore((s) => s.chats[chatId]);
  const view = useStore((s) => s.views[chatId]);
  const me = useStore((s) => s.me);
  const presence = useStore((s) => (chat ? s.presence[chat.other.id] : undefined));
  const isTyping = useStore((s) => s.typing[chatId] ?? false);
  const keyChanged = useStore((s) => (chat ? (s.keyChanged[chat.other.id] ?? false) : false));
  const connection = useStore((s) => s.connection);
  const [text, setText] = useState('');
  const [safety, setSafety] = useState(false);
  const list = useRef<HTMLOListElement>(null);
  const stick = useRef(true);
  const prevHeight = useRef(0);
  const messages = view?.messages ?? EMPTY;

  useEffect(() => {
    let live = true;
    void loadDraft(chatId).then((d) => live && d && setText(d));
    return () => {
      live = false;
    };
  }, [chatId]);

  // Escape closes the conversation (the back arrow does on phones).
  useEffect(() => {
    const onKey = (e: globalThis.KeyboardEvent) => {
      if (e.key === 'Escape' && !document.querySelector('.modal')) void openChat(null);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);

  // Keep the bottom in view as messages arrive; keep the position when older ones are prepended.
  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    if (stick.current) el.scrollTop = el.scrollHeight;
    else if (prevHeight.current && el.scrollTop < 5) el.scrollTop = el.scrollHeight - prevHeight.current;
    prevHeight.current = el.scrollHeight;
  }, [messages, isTyping]);

  if (!chat) return null;

  function onScroll() {
    const el = list.current;
    if (!el) return;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 80 && view?.hasMore && !view.loadingOlder) {
      prevHeight.current = el.scrollHeight;
      void loadOlder(chatId);
    }
  }

  function submit() {
    const t = text;
    if (!t.trim()) return;
    setText('');
    stick.current = true;
    void saveDraft(chatId, '');
    void send(chatId, t);
  }

  function onKey(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      submit();
    }
  }

  return (
    <section className="conversation" data-testid="conversation">
      <header className="bar">
        <button className="icon back" aria-label="Back to chats" onClick={() => void openChat(null)} data-testid="back">
          <Icon name="back" size={20} />
        </button>
        <Avatar user={chat.other} presence={presence} />
        <div className="who">
          <strong>{name(chat.other)}</strong>
          <span className="muted small" data-testid="peer-status">
            {isTyping ? <em className="typing-text">typing…</em> : presence === 'online' ? 'online' : presence === 'away' ? 'away' : 'offline'}
          </span>
        </div>
        <button className={`ghost small ${keyChanged ? 'warn' : ''}`} onClick={() => setSafety(true)} data-testid="safety-open">
          <Icon name={keyChanged ? 'warn' : 'shield'} size={16} /> {keyChanged ? 'Keys changed' : 'Safety number'}
        </button>
      </header>
      {keyChanged && (
        <div className="banner warn" role="alert" data-testid="key-warning">
          <span>
            {name(chat.other)}’s safety number changed. They may have a new device or reinstalled — or someone may be
            intercepting. Compare the number before you trust new messages.
          </span>
          <button onClick={() => setSafety(true)}>Compare</button>
        </div>
      )}
      {safety && <SafetyNumber user={chat.other} onClose={() => setSafety(false)} />}
      <ol className="messages" ref={list} onScroll={onScroll} data-testid="messages">
        {view?.loadingOlder && <li className="loading">Loading earlier messages…</li>}
        {view && !view.hasMore && messages.length > 0 && <li className="start muted small">This is the start of your chat. Messages are end-to-end encrypted.</li>}
        {messages.length === 0 && <li className="start muted">No messages yet. Say hello to {name(chat.other)}.</li>}
        {messages.map((m) => (
          <Bubble key={m.tempMessageId + m.sender} m={m} mine={m.sender === me?.id} />
        ))}
        {isTyping && (
          <li className="msg theirs" data-testid="typing">
            <div className="bubble typing-dots" aria-label={`${name(chat.other)} is typing`}>
              <span />
              <span />
              <span />
            </div>
          </li>
        )}
      </ol>
      <form
        className="composer"
        onSubmit={(e) => {
          e.preventDefault();
          submit();
        }}
      >
        <textarea
          rows={1}
          placeholder={connection === 'online' ? 'Message' : 'Message (sent when back online)'}
          aria-label="Message"
          value={text}
          onChange={(e) => {
            setText(e.target.value);
            void saveDraft(chatId, e.target.value);
            typing(chatId);
          }}
          onKeyDown={onKey}
          data-testid="composer"
        />
        <button className="primary send" type="submit" disabled={!text.trim()} aria-label="Send" data-testid="send">
          <Icon name="send" size={18} />
        </button>
      </form>
    </section>
  );
}
