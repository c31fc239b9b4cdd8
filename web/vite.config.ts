/// <reference types="vitest/config" />
// Vite: the dev server proxies the API and Socket.IO to a running `jibber serve` (JIBBER_URL,
// default http://127.0.0.1:8080); `npm run build` writes dist/ (crates/jibber-web embeds it).
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const target = process.env.JIBBER_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  build: {
    target: 'es2022',
    // The OPAQUE WebAssembly is inlined by its package; keep every asset a file (CSP: no data: scripts).
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: {
      '/api': { target, changeOrigin: false },
      '/socket.io': { target, ws: true, changeOrigin: false },
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
    // Safety numbers hash 5200 times per side; a busy CI machine needs more than the default 5 s.
    testTimeout: 60_000,
  },
});
