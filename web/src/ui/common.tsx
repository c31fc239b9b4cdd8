import type { Presence } from '../model';
import { displayName, initials } from '../model';
import type { PublicUser } from '../lib/types';

export function Avatar({ user, presence }: { user: Pick<PublicUser, 'username' | 'displayName' | 'id'>; presence?: Presence }) {
  const hue = [...user.id].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
  return (
    <span className={`avatar hue-${Math.floor(hue / 30)}`} aria-hidden="true">
      {initials(user)}
      {presence && presence !== 'offline' && <span className={`dot ${presence}`} data-testid={`presence-${presence}`} />}
    </span>
  );
}

export const name = displayName;

export function formatTime(iso: string, withDay = false): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  if (sameDay || !withDay) return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' });
}
