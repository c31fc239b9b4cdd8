import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App, secure } from './ui/App';
import { boot } from './engine';
import './styles.css';

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
  if (secure) void boot();
}

// The offline app shell (public/sw.js); browsers allow it on https and on localhost.
if ('serviceWorker' in navigator && import.meta.env.PROD) {
  navigator.serviceWorker.register('/sw.js').catch((e) => console.warn('jibber: no offline shell:', e));
}
