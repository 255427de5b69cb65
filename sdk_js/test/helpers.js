// Fakes for the unit tests: a gateway answering fetch(), storage, timers and just enough of
// a window/document for the SDK. fixtures/policy.json is a snapshot of GET /v1/policy.
// (node --test also runs this file; it holds no tests.)

import { readFileSync } from 'node:fs';

export const POLICY = JSON.parse(readFileSync(new URL('./fixtures/policy.json', import.meta.url), 'utf8'));
export const PURPOSES = Object.keys(POLICY.purposes);
export const freshPolicy = () => JSON.parse(JSON.stringify(POLICY));

/** A consent state as GET /v1/consent answers it, with `granted` purposes granted. */
export function stateOf(granted, extra) {
  const recorded = granted != null;
  const purposes = {};
  for (const p of PURPOSES) {
    const on = p === 'necessary' || (granted || []).includes(p);
    purposes[p] = { granted: on, version: recorded ? POLICY.version : null, at: null };
    if (p !== 'necessary') purposes[p].decided = recorded;
  }
  return Object.assign(
    { policy_version: recorded ? POLICY.version : null, current_version: POLICY.version, recorded, purposes, needs_reconsent: [] },
    extra,
  );
}

export function response(status, body, headers) {
  headers = headers || {};
  return {
    status,
    ok: status >= 200 && status < 300,
    json: async () => body,
    headers: { get: (k) => (k.toLowerCase() in headers ? headers[k.toLowerCase()] : null) },
  };
}

/**
 * A gateway behind fetch(). `answers` is a list of what /v1/events answers in turn: a
 * status, 'network' (fetch rejects), 'hang' (never answers) or [status, body, headers];
 * once used up, 202. `gw.consentAnswers` does the same for POST /v1/consent (null, or once
 * used up: the consent is recorded), and `gw.policy` is what GET /v1/policy answers. Like the real
 * one, it refuses a grant of a sensitive purpose made together with other decisions.
 */
export function fakeGateway(granted, answers) {
  const gw = { state: stateOf(granted), calls: [], posts: [], answers: (answers || []).slice(), consentAnswers: [] };
  gw.policy = freshPolicy();
  const refused = (a) => {
    if (a === 'network') throw new TypeError('Failed to fetch');
    const [status, answer] = Array.isArray(a) ? a : [a, { error: { code: 'http_' + a, message: 'HTTP ' + a } }];
    return response(status, answer);
  };
  gw.fetch = async (url, init) => {
    init = init || {};
    const u = new URL(url);
    const method = init.method || 'GET';
    gw.calls.push({ method, path: u.pathname + u.search, init });
    if (u.pathname === '/v1/policy') return response(200, JSON.parse(JSON.stringify(gw.policy)));
    if (u.pathname === '/v1/consent' && method === 'GET') return response(200, gw.state);
    if (u.pathname === '/v1/consent') {
      const body = method === 'POST' ? JSON.parse(init.body) : { purposes: {} };
      const a = method === 'POST' && gw.consentAnswers.length ? gw.consentAnswers.shift() : null;
      if (a != null) return refused(a);
      const others = Object.keys(body.purposes).filter((p) => p !== 'necessary');
      const bundled = others.find((p) => body.purposes[p] === true && gw.policy.purposes[p].sensitive && others.length > 1);
      if (bundled) {
        const message = bundled + ' is sensitive personal information: grant it in a request of its own';
        return response(400, { error: { code: 'separate_consent_required', message } });
      }
      const now = PURPOSES.filter((p) => {
        if (method === 'DELETE') return false;
        return p in body.purposes ? body.purposes[p] : gw.state.purposes[p].granted && p !== 'necessary';
      });
      gw.state = stateOf(now);
      return response(method === 'POST' ? 201 : 200, { state: gw.state, receipt: { id: 'r' + gw.calls.length } });
    }
    if (u.pathname === '/v1/events') {
      const body = JSON.parse(init.body);
      gw.posts.push(body);
      const a = gw.answers.length ? gw.answers.shift() : 202;
      if (a === 'network') throw new TypeError('Failed to fetch');
      if (a === 'hang') return new Promise(() => {});
      const [status, answer, headers] = Array.isArray(a) ? a : [a, {}];
      return response(status, answer, headers);
    }
    return response(404, { error: { code: 'not_found' } });
  };
  return gw;
}

export function fakeStorage(initial) {
  const m = new Map(Object.entries(initial || {}));
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
    map: m,
  };
}

/**
 * Timers that remember the delays asked for and fire at once (on a microtask), or, with
 * `manual` (true, or a test of the delay), only when run() is called.
 */
export function fakeTimers(manual) {
  const delays = [];
  const waiting = [];
  return {
    delays,
    setTimeout: (fn, ms) => {
      delays.push(ms);
      if (manual === true || (manual && manual(ms))) waiting.push(fn);
      else Promise.resolve().then(fn);
      return delays.length;
    },
    clearTimeout: () => {},
    run: () => waiting.splice(0).forEach((fn) => fn()),
  };
}

/** An element for the fake DOM: attributes, closest(), listeners. */
export function element(tag, attrs, parent) {
  const el = {
    tagName: tag.toUpperCase(),
    style: {},
    children: [],
    parent: parent || null,
    attrs: Object.assign({}, attrs),
    get attributes() {
      return Object.keys(this.attrs).map((name) => ({ name, value: this.attrs[name] }));
    },
    getAttribute(k) {
      return k in this.attrs ? this.attrs[k] : null;
    },
    setAttribute(k, v) {
      this.attrs[k] = String(v);
    },
    closest(sel) {
      const m = /^\[([\w-]+)\]$/.exec(sel);
      for (let e = this; e; e = e.parent) if (m && m[1] in e.attrs) return e;
      return null;
    },
    appendChild(c) {
      c.parent = this;
      this.children.push(c);
      return c;
    },
    remove() {},
  };
  return el;
}

/** A window with a document, history, location and event listeners. */
export function fakeWindow(opts) {
  opts = opts || {};
  const listeners = {};
  const on = (target) => (type, fn) => (listeners[target + type] = listeners[target + type] || []).push(fn);
  const all = [];
  const find = (id, list) => {
    for (const e of list) {
      if (e.id === id) return e;
      const f = find(id, e.children);
      if (f) return f;
    }
    return null;
  };
  const document = {
    title: opts.title || 'Shop',
    referrer: opts.referrer || '',
    visibilityState: 'visible',
    documentElement: { lang: opts.lang || '' },
    head: element('head'),
    body: element('body'),
    createElement: (tag) => {
      const e = element(tag);
      all.push(e);
      return e;
    },
    getElementById: (id) => find(id, [document.head, document.body]),
    addEventListener: on('document:'),
  };
  const win = {
    document,
    location: { href: opts.href || 'https://shop.example.com/' },
    navigator: Object.assign({}, opts.navigator),
    history: {
      pushState(s, t, url) {
        win.location.href = new URL(url, win.location.href).href;
      },
      replaceState(s, t, url) {
        win.location.href = new URL(url, win.location.href).href;
      },
    },
    addEventListener: on('window:'),
    dispatchEvent: () => true,
    /** Runs the listeners of `target` ("window" or "document") for `type`. */
    fire(target, type, event) {
      (listeners[target + ':' + type] || []).forEach((fn) => fn(event || {}));
    },
  };
  return win;
}

export const tick = () => new Promise((r) => setImmediate(r));
