// Types for herald.js, Herald's browser client.

export interface Notification {
  id: string;
  type: string;
  priority: "low" | "medium" | "high" | "urgent";
  title: string;
  message: string;
  action_url: string | null;
  data: Record<string, unknown>;
  triggered_by_name: string | null;
  created_at: string;
  is_read: boolean;
  /** Position in Herald's commit order. */
  seq: number;
}

export interface NotificationList {
  notifications: Notification[];
  total: number;
  unread_count: number;
  page: number;
  per_page: number;
}

export interface Stats {
  total_count: number;
  unread_count: number;
  by_type: Record<string, number>;
  by_priority: Record<string, number>;
}

export interface Preferences {
  email_enabled: boolean;
  digest: "off" | "hourly" | "daily";
  muted_types: string[];
}

export type State = "idle" | "connecting" | "open" | "reconnecting" | "follower" | "closed";

export interface HeraldEvents {
  status: CustomEvent<{ state: State; leader: boolean }>;
  connected: CustomEvent<{ userId: string }>;
  /** `toast` is true in exactly one tab: the one that should show it. */
  notification: CustomEvent<{ notification: Notification; toast: boolean }>;
  read: CustomEvent<{ id?: string; all?: boolean; count?: number }>;
  deleted: CustomEvent<{ id: string }>;
  event: CustomEvent<{ event: string; data: unknown }>;
  /** The server cannot guarantee continuity: reload the inbox over REST. */
  refetch: CustomEvent<{ reason: string }>;
  expired: CustomEvent<Record<string, never>>;
  servererror: CustomEvent<{ message: string }>;
}

export interface HeraldOptions {
  /** A JWT, or a function returning a fresh one (then it is refreshed over the socket before expiry). */
  token: string | (() => string | Promise<string>);
  /** Herald's origin; default: the page's. */
  url?: string;
  /** One WebSocket for all tabs of this origin (default: when Web Locks and BroadcastChannel exist). */
  shareAcrossTabs?: boolean;
  /** Client ping period in ms (default 25 000). */
  pingEvery?: number;
  backoff?: { base?: number; cap?: number };
}

export declare function backoffDelay(attempt: number, options?: { base?: number; cap?: number; random?: () => number }): number;

export declare class SeenIds {
  constructor(limit?: number);
  has(id: string): boolean;
  add(id: string): boolean;
}

export declare class ResumePoint {
  constructor(storage?: Storage | null, key?: string);
  id: string | null;
  seq: number;
  see(notification: Pick<Notification, "id" | "seq">): boolean;
  since(): string | null;
  reset(): void;
}

export declare function tokenClaims(token: string): { sub?: string; exp?: number; [claim: string]: unknown };

export declare class HeraldClient extends EventTarget {
  constructor(options: HeraldOptions);
  readonly state: State;
  readonly isLeader: boolean;
  start(): Promise<void>;
  stop(): void;
  acknowledge(id: string): void;
  list(query?: { skip?: number; limit?: number; unreadOnly?: boolean; type?: string; priority?: string }): Promise<NotificationList>;
  stats(): Promise<Stats>;
  markRead(id: string): Promise<Notification>;
  markAllRead(): Promise<{ message: string }>;
  remove(id: string): Promise<{ message: string }>;
  preferences(): Promise<Preferences>;
  savePreferences(update: Partial<Preferences>): Promise<Preferences>;
  addEventListener<K extends keyof HeraldEvents>(type: K, listener: (event: HeraldEvents[K]) => void, options?: boolean | AddEventListenerOptions): void;
}
