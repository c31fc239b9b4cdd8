import { useStore } from '../store';
import { retryNow } from '../engine';
import { ChatList } from './ChatList';
import { Conversation } from './Conversation';

export function Shell() {
  const active = useStore((s) => s.activeChatId);
  const unreachable = useStore((s) => s.unreachable);
  const connection = useStore((s) => s.connection);
  const notice = useStore((s) => s.notice);
  return (
    <div className={`shell ${active ? 'has-active' : ''}`}>
      {unreachable && connection !== 'online' && (
        <div className="banner error" role="alert" data-testid="unreachable">
          <span>
            {connection === 'offline' ? 'You are offline.' : unreachable} Messages you send wait on this device and go out
            when the connection is back.
          </span>
          <button onClick={retryNow} data-testid="retry-now">
            Retry now
          </button>
        </div>
      )}
      {notice && (
        <div className="banner info" role="status">
          <span>{notice}</span>
          <button onClick={() => useStore.setState({ notice: null })}>Dismiss</button>
        </div>
      )}
      <aside className="sidebar">
        <ChatList />
      </aside>
      <main className="main">
        {active ? (
          <Conversation key={active} chatId={active} />
        ) : (
          <div className="empty-main">
            <img src="/icon.svg" alt="" width={72} height={72} />
            <p>Choose a chat, or start a new one.</p>
            <p className="muted small">Messages are end-to-end encrypted.</p>
          </div>
        )}
      </main>
    </div>
  );
}
