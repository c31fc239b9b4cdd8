// Wire types of shared/API.md and docs/protocol.md, as the web client uses them.

export interface Me {
  id: string;
  username: string;
  displayName?: string;
  publicIdKey: string;
  publicSigningKey: string;
  createdAt: string;
}

export interface PublicUser {
  id: string;
  username: string;
  displayName?: string;
  publicIdKey: string;
  publicSigningKey: string;
  lastSeen?: string;
}

export type DeliveryStatus = 'sent' | 'delivered' | 'read';

export interface WireMessage {
  id: string;
  chatId: string;
  sender: string;
  receiver: string;
  cipher: string;
  iv: string;
  signature: string;
  senderPublicIdKey: string;
  senderPublicSigningKey: string;
  receiverPublicIdKey: string;
  sequenceNumber: number;
  deliveryStatus: DeliveryStatus;
  clientTimestamp: string;
  tempMessageId: string;
  createdAt: string;
  deliveredAt?: string;
  readAt?: string;
}

export interface WireChat {
  id: string;
  otherUser: PublicUser;
  lastMessage?: WireMessage | null;
  unreadCount: number;
  lastSequence: number;
  createdAt: string;
  updatedAt: string;
}

export interface Pagination {
  hasMore: boolean;
  nextCursor?: string;
  nextBefore?: number;
  nextSince?: number;
}

export type Change =
  | { type: 'chat'; cursor: number; chat: WireChat }
  | { type: 'message'; cursor: number; message: WireMessage }
  | {
      type: 'delivered';
      cursor: number;
      chatId: string;
      messageId: string;
      sequenceNumber: number;
      deliveredAt: string;
    }
  | { type: 'read'; cursor: number; chatId: string; reader: string; upToSequence: number; readAt: string };

export interface SyncPage {
  changes: Change[];
  nextCursor: number;
  hasMore: boolean;
}

export interface SendAck {
  messageId: string;
  tempMessageId: string;
  chatId: string;
  sequenceNumber: number;
  createdAt: string;
  duplicate?: boolean;
}

export interface Tokens {
  accessToken: string;
  expiresIn: number;
}
