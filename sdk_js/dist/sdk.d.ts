// Type declarations of the consent gateway browser SDK (hand-written; see README.md).

export type Purpose =
  | 'necessary'
  | 'account_security'
  | 'precise_location'
  | 'saved_login'
  | 'personalization'
  | 'advertising'
  | (string & {});

export type EventType =
  | 'page_view'
  | 'search'
  | 'click'
  | 'drawing_download'
  | 'cart'
  | 'quote'
  | 'consultation'
  | 'design_usage'
  | 'screen_view'
  | 'app_open'
  | (string & {});

/**
 * Where the choice was made. `login`: on a login form ("keep me logged in"), the only place a
 * purpose the policy asks at login (`asked_at: "login"`, saved_login) is granted from a page;
 * the gateway refuses such a grant from `banner` or `settings`.
 */
export type ConsentSource = 'banner' | 'settings' | 'app' | 'api' | 'login';

export interface InitOptions {
  /** Origin (and optional path) of the gateway, e.g. "https://t.example.com". */
  endpoint: string;
  /** "zh" or "en"; default from <html lang> (zh* -> zh, else en). */
  lang?: 'zh' | 'en' | string;
  /** Send a page_view on init and on history navigation (personalization only). Default true. */
  autoPageViews?: boolean;
  /** Where to load the banner from; default `${endpoint}/sdk-banner.<hash>.js`. */
  bannerUrl?: string;
}

export interface PurposeState {
  granted: boolean;
  version: string | null;
  at: string | null;
  decided?: boolean;
  stale?: boolean;
}

/** GET /v1/consent */
export interface ConsentState {
  policy_version: string | null;
  current_version: string;
  recorded: boolean;
  purposes: Record<Purpose, PurposeState>;
  needs_reconsent: Purpose[];
  gpc?: boolean;
}

/**
 * A signed copy of one ledger entry. `jws` is a JWS (EdDSA, Ed25519) whose payload is the
 * receipt without `jws`; anyone verifies it with GET /.well-known/jwks.json.
 */
export interface Receipt {
  id: string;
  /** The entry's position in the subject's ledger, from "1". */
  entry_id: string;
  subject: string;
  time: string;
  policy_version: string;
  purposes: Record<Purpose, boolean>;
  source: string;
  action: 'consent' | 'withdraw' | string;
  prev: string;
  hash: string;
  jws: string;
}

/** The 201/200 answer of POST and DELETE /v1/consent. */
export interface ConsentAnswer {
  state: ConsentState;
  receipt: Receipt;
}

/** Rejections of consent calls carry the gateway's status and error body. */
export interface GatewayError extends Error {
  status?: number;
  body?: { error?: { code: string; message: string; fields?: Record<string, string> } };
}

export interface Consent {
  /** The caller's state, fresh from GET /v1/consent. */
  get(): Promise<ConsentState>;
  /**
   * POST /v1/consent under the current policy version; advertising stays false under GPC.
   * A grant of a purpose the policy marks `sensitive` (PIPL art. 29: a separate consent),
   * made with other decisions, rejects with `code: 'separate_consent_required'` before
   * anything is sent, unless `asked.separately` says the page asked for it on its own (as
   * the banner does): then it is posted alone, after the others, and the call resolves with
   * the last answer.
   */
  grant(
    purposes: Partial<Record<Purpose, boolean>>,
    source?: ConsentSource,
    asked?: { separately?: boolean },
  ): Promise<ConsentAnswer>;
  /** No argument: DELETE /v1/consent (everything but necessary). Else those purposes false. */
  withdraw(purposes?: Purpose | Purpose[], source?: ConsentSource): Promise<ConsentAnswer>;
  /** Opens the banner in settings mode; resolves once it is shown. */
  open(): Promise<void>;
}

/** An SDK instance (what create() returns). */
export interface ConsentGatewaySdk {
  readonly version: string;
  /** Loads the policy and the consent state; resolves with the state. */
  init(options: InitOptions): Promise<ConsentState>;
  consent: Consent;
  /**
   * Queues an event with the fields whose purpose is granted. Resolves true when queued,
   * false when nothing of it may be sent.
   */
  track(type: EventType, fields?: Record<string, unknown>): Promise<boolean>;
  /** Sends what is queued now; resolves when done (never rejects). */
  flush(): Promise<void>;
}

/** window.ConsentGateway once the SDK has loaded. */
export interface ConsentGatewayApi extends ConsentGatewaySdk {
  /** Also callable as the snippet's queue: ConsentGateway('track', 'search', {keyword: 'x'}). */
  (command: string, ...args: unknown[]): Promise<unknown>;
}

/** What the banner (dist/sdk-banner.js) is called with: window.ConsentGatewayBanner(ctx). */
export interface BannerContext {
  policy: unknown;
  state: ConsentState;
  lang: 'zh' | 'en';
  gpc: boolean;
  mode: 'first' | 'reconsent' | 'settings';
  grant: Consent['grant'];
}

// Also exported by sdk.mjs, for tests and custom set-ups.
export interface Env {
  window?: Window;
  fetch?: typeof fetch;
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: unknown) => void;
  now?: () => number;
  random?: () => number;
}
export function create(env?: Env): ConsentGatewaySdk;
export function install(w: Window, sdk: ConsentGatewaySdk): ConsentGatewayApi;
export function minimise(event: object, policy: object, granted: Record<string, boolean>): object | null;
/** The POST /v1/consent bodies' `purposes` that record `purposes`, sensitive grants alone. */
export function separately(
  purposes: Partial<Record<Purpose, boolean>>,
  policy: object,
): Partial<Record<Purpose, boolean>>[];
/** Purposes granted today; under GPC the policy's advertising purpose is left out, and without
 * the policy (which names it) nothing is: fail closed. */
export function grantedOf(
  state: ConsentState,
  gpc?: boolean,
  policy?: object,
): Record<string, true>;
export function roleOf(policy: object, role: 'advertising' | 'saved_login' | 'browsing'): string | null;
export function retryable(status: number): boolean;
export function backoff(attempt: number, random: number, retryAfterS?: number): number;
export function cut<T>(events: T[]): T[];
export const MAX_QUEUE: number;
export const MAX_BATCH: number;
export const MAX_BYTES: number;
export const ATTEMPTS: number;
export const FLUSH_DELAY: number;

/** The instance installed on window (null outside a browser). */
declare const ConsentGateway: ConsentGatewayApi | null;
export default ConsentGateway;

declare global {
  interface Window {
    ConsentGateway?: ConsentGatewayApi;
  }
}
