// Browser SDK of the consent gateway (docs/protocol.md).
//
// Loaded by the snippet (src/snippet.js), it replaces the queueing stub `window.ConsentGateway`
// with the real API and replays what the page queued. It sends nothing but the policy and
// consent calls until the visitor has granted a purpose, and every event field is checked
// against the policy document: a field whose purpose is not granted never leaves the browser.
//
// ES2017 and no dependencies. build.mjs makes the IIFE (dist/sdk.js) and the ES module
// (dist/sdk.mjs) from this file; the tests import it directly and drive create() with fakes.

/* global __BANNER__ */
// The content-hashed banner file name, put in by build.mjs (`define`).
const BANNER = typeof __BANNER__ === 'string' ? __BANNER__ : 'sdk-banner.js';

export const MAX_QUEUE = 500; // events held in memory; the oldest are dropped beyond
export const MAX_BATCH = 100; // events per request (the gateway's limit)
export const MAX_BYTES = 60000; // body bytes per request: under the gateway's 64 KiB and the
//                                 browsers' 64 KiB keepalive / sendBeacon budget
export const ATTEMPTS = 5; // sends of one batch before it waits for the next flush
export const FLUSH_DELAY = 1000; // ms to gather events into one request
const MAX_AGE = 6 * 864e5; // a stored event older than this would be refused (7 day window)
const KEY = 'cg_q'; // localStorage key of the queue
const NECESSARY = 'necessary';
const ENVELOPE = ['event_id', 'type', 'ts'];
const noop = () => {};

// --------------------------------------------------------------------------- pure rules

/** Whether a failed send is worth repeating: network error (0), 429, 5xx. */
export function retryable(status) {
  return status === 0 || status === 429 || status >= 500;
}

/** Delay before retry number `attempt` (0-based): 1 s doubling, half of it random jitter. */
export function backoff(attempt, random, retryAfterS) {
  const base = 1000 * Math.pow(2, attempt);
  return Math.min(Math.max(base / 2 + (random * base) / 2, (retryAfterS || 0) * 1000), 60000);
}

/** The purpose the policy document gives `role` ("advertising", "browsing"...), if any. */
export function roleOf(policy, role) {
  const ps = (policy && policy.purposes) || {};
  for (const p in ps) if (ps[p].role === role) return p;
  return null;
}

/**
 * Purposes granted today, as {purpose: true}; GPC takes the advertising purpose away. Under
 * GPC without the policy (which names that purpose) nothing counts as granted: fail closed.
 */
export function grantedOf(state, gpc, policy) {
  const g = {};
  const ps = (state && state.purposes) || {};
  for (const p in ps) if (ps[p] && ps[p].granted) g[p] = true;
  if (gpc) {
    const ad = roleOf(policy, 'advertising');
    if (!ad) return {};
    delete g[ad];
  }
  return g;
}

/**
 * The event reduced to the fields whose purpose is granted, or null when nothing is left.
 * A field's purpose is the one the policy document gives it for the event's type
 * (`event_types[type].fields`), or, for fields sent with any type (gps), the purpose that
 * lists it with event_types ["*"]. Unknown types and fields are dropped: the gateway would
 * refuse the whole request for them.
 */
export function minimise(ev, policy, granted) {
  const et = policy && policy.event_types && policy.event_types[ev.type];
  if (!et || !Object.keys(granted).some((p) => p !== NECESSARY)) return null;
  const out = { event_id: ev.event_id, type: ev.type };
  if (ev.ts) out.ts = ev.ts;
  let n = 0;
  for (const k in ev) {
    const v = ev[k];
    if (ENVELOPE.indexOf(k) >= 0 || v == null || v === '') continue;
    const p = et.fields[k] || anyType(policy)[k];
    if (p && granted[p]) {
      out[k] = v;
      n++;
    }
  }
  return n ? out : null;
}

// Fields an event of any type may carry: {field: purpose}.
function anyType(policy) {
  if (!policy._any) {
    const m = {};
    for (const p in policy.purposes) {
      const fs = policy.purposes[p].fields || {};
      for (const f in fs) {
        if (fs[f].source === 'event' && (fs[f].event_types || []).indexOf('*') >= 0) m[f] = p;
      }
    }
    Object.defineProperty(policy, '_any', { value: m });
  }
  return policy._any;
}

// The catalogue type of a field for an event type ("integer", "string"...), if known.
function typeOf(policy, type, field) {
  const et = policy && policy.event_types[type];
  const p = et && (et.fields[field] || anyType(policy)[field]);
  const f = p && policy.purposes[p].fields[field];
  return f && f.type;
}

/**
 * The requests that record `purposes` (after GPC): a grant of a purpose the policy marks
 * `sensitive` made together with other decisions goes in a request of its own, after the
 * others (PIPL art. 29, separate consent; the gateway refuses it bundled). `necessary` may
 * stand beside it.
 */
export function separately(purposes, policy) {
  const names = Object.keys(purposes).filter((k) => k !== NECESSARY);
  const ps = (policy && policy.purposes) || {};
  const alone = names.length > 1 ? names.filter((k) => purposes[k] === true && ps[k] && ps[k].sensitive) : [];
  if (!alone.length) return [purposes];
  const rest = {};
  for (const k in purposes) if (alone.indexOf(k) < 0) rest[k] = purposes[k];
  const out = alone.map((k) => ({ [k]: true }));
  if (names.length > alone.length) out.unshift(rest);
  else Object.assign(out[0], rest); // only `necessary` besides: it goes with the first
  return out;
}

/** UTF-8 byte length of a string. */
function bytes(s) {
  return new TextEncoder().encode(s).length;
}

/** The first events of `list` that fit in one request (at least one). */
export function cut(list) {
  let size = 12; // {"events":[]}
  let i = 0;
  while (i < list.length && i < MAX_BATCH) {
    size += bytes(JSON.stringify(list[i])) + 1;
    if (i && size > MAX_BYTES) break;
    i++;
  }
  return list.slice(0, i);
}

function hex(random) {
  const c = typeof crypto !== 'undefined' && crypto.getRandomValues;
  const b = c ? crypto.getRandomValues(new Uint8Array(16)) : [];
  let s = '';
  for (let i = 0; i < 16; i++) s += ((c ? b[i] : random() * 256) | 256).toString(16).slice(1);
  return s;
}

// --------------------------------------------------------------------------- the SDK

/**
 * Makes an SDK instance. `env` replaces the browser for tests: window, fetch, storage
 * (localStorage), setTimeout/clearTimeout, now, random.
 */
export function create(env) {
  env = env || {};
  const w = env.window;
  const doc = w && w.document;
  const nav = (w && w.navigator) || {};
  const fetchFn = env.fetch || ((u, i) => w.fetch(u, i));
  const later = env.setTimeout || ((f, ms) => setTimeout(f, ms));
  const cancel = env.clearTimeout || ((t) => clearTimeout(t));
  const now = env.now || Date.now;
  const random = env.random || Math.random;
  let storage = env.storage;
  if (storage === undefined) {
    try {
      storage = w && w.localStorage; // throws where storage is blocked
    } catch (e) {
      storage = null;
    }
  }

  let o = null; // init options
  let policy = null;
  let state = null;
  let loading = null; // promise of the first policy + consent load
  let q = []; // events not yet acknowledged by the gateway, oldest first
  const busy = new Set(); // events of q being sent right now
  const pending = new Set(); // track() calls not yet queued; flush() waits for them
  let running = Promise.resolve(); // flushes run one after another
  let timer = 0;
  let bannerLoad = null;
  let here = w && w.location ? w.location.href : ''; // the page we are on
  let ref = doc ? doc.referrer : ''; // and where it was reached from
  let viewed = null; // the page a page_view was queued for

  const gpc = () => nav.globalPrivacyControl === true || !!(state && state.gpc);
  const granted = () => grantedOf(state, gpc(), policy);
  const browsing = () => !!granted()[roleOf(policy, 'browsing')];
  const zh = () => o.lang === 'zh';
  const asked = (p) => (policy.purposes[p] || {}).asked_at !== 'login'; // by the banner

  function call(method, path, body) {
    if (!o) return Promise.reject(new Error('ConsentGateway: call init first'));
    return fetchFn(o.endpoint + path, {
      method,
      credentials: 'include',
      body: body && JSON.stringify(body), // a string body is text/plain: no CORS preflight
    }).then((r) =>
      r.json().catch(noop).then((j) => {
        if (r.ok) return j;
        const e = new Error((j && j.error && j.error.message) || 'HTTP ' + r.status);
        e.status = r.status;
        e.body = j;
        throw e;
      }),
    );
  }

  // The policy and the caller's consent, loaded once (again after a failure).
  function load() {
    return (
      loading ||
      (loading = Promise.all([call('GET', '/v1/policy'), call('GET', '/v1/consent')]).then(
        (r) => {
          policy = r[0];
          let saved = null;
          try {
            saved = JSON.parse(storage.getItem(KEY)); // before setState() rewrites it
          } catch (e) {
            // none, unreadable or no storage
          }
          setState(r[1]);
          restore(saved);
          // Only the banner's own purposes count: a grant made when logging in (saved_login,
          // asked_at "login") is no answer to the banner, and the banner never asks for it.
          const ps = state.purposes;
          const mode = !Object.keys(ps).some((p) => ps[p].decided && asked(p))
            ? 'first'
            : (state.needs_reconsent || []).filter(asked).length
              ? 'reconsent'
              : '';
          if (mode) banner(mode).catch(noop); // visitors who already chose never load it
          view();
        },
        (e) => {
          loading = null;
          throw e;
        },
      ))
    );
  }
  // Later in this tick: commands queued before init still find it.
  const ready = () => Promise.resolve().then(load);

  // A new consent state: events already queued lose what is no longer granted.
  function setState(s) {
    state = s.state || s; // GET answers the state, POST/DELETE {state, receipt}
    const g = granted();
    q = q.filter((e) => {
      const m = minimise(e, policy, g);
      for (const k in e) if (!m || !(k in m)) delete e[k];
      return m;
    });
    persist();
  }

  // The queue outlives the page in localStorage only while the browsing purpose is granted.
  function persist() {
    try {
      if (q.length && browsing()) storage.setItem(KEY, JSON.stringify(q));
      else storage.removeItem(KEY);
    } catch (e) {
      // no storage: the queue lives in memory only
    }
  }

  // The queue a previous page left: sent if the browsing purpose (still) allows it.
  function restore(saved) {
    const g = granted();
    const ids = q.map((e) => e.event_id);
    const old = (browsing() && Array.isArray(saved) ? saved : [])
      .filter((e) => e && ids.indexOf(e.event_id) < 0 && now() - Date.parse(e.ts) < MAX_AGE)
      .map((e) => minimise(e, policy, g))
      .filter(Boolean);
    q = old.concat(q).slice(-MAX_QUEUE);
    persist();
    if (q.length) schedule();
  }

  function wait(p) {
    pending.add(p);
    const done = () => pending.delete(p);
    p.then(done, done);
    return p;
  }

  // Resolves once no track() is pending, including those started by pending ones (a
  // navigation's page view).
  const settle = () => pending.size && Promise.all(Array.from(pending)).then(settle);

  function track(type, fields) {
    // id and time are fixed now: a retry or a later flush sends the same event
    const ev = Object.assign({}, fields, { event_id: hex(random), type, ts: new Date(now()).toISOString() });
    return wait(
      ready().then(
        () => enqueue(ev),
        () => false,
      ),
    );
  }

  function enqueue(ev) {
    for (const k in ev) {
      // "3" from a data attribute is sent as 3 where the catalogue wants a number
      const t = typeOf(policy, ev.type, k);
      if ((t === 'integer' || t === 'number') && typeof ev[k] === 'string') {
        ev[k] = ev[k].trim() && isFinite(ev[k]) ? +ev[k] : null;
      }
    }
    const m = minimise(ev, policy, granted());
    if (!m) return false;
    q.push(m);
    if (q.length > MAX_QUEUE) q.splice(0, q.length - MAX_QUEUE);
    persist();
    schedule();
    return true;
  }

  function schedule() {
    if (q.length - busy.size >= MAX_BATCH) flush();
    else if (!timer) timer = later(flush, FLUSH_DELAY);
  }

  function flush() {
    cancel(timer);
    timer = 0;
    running = running
      .then(() => o && ready().catch(noop)) // init's own page view is part of "now"
      .then(settle)
      .then(send)
      .catch(noop);
    return running;
  }

  async function send() {
    let todo = q.filter((e) => !busy.has(e)); // what is queued now, not what comes later
    while (todo.length) {
      const batch = cut(todo);
      todo = todo.slice(batch.length);
      batch.forEach((e) => busy.add(e));
      const keep = await deliver(batch);
      batch.forEach((e) => busy.delete(e));
      if (!keep) drop(batch);
    }
  }

  function drop(events) {
    q = q.filter((e) => events.indexOf(e) < 0);
    persist();
  }

  // Sends one batch; true when it should stay queued (retries exhausted).
  async function deliver(batch) {
    let refused = 0;
    for (let attempt = 0; ; ) {
      batch = batch.filter((e) => q.indexOf(e) >= 0); // a beacon may have taken some
      if (!batch.length) return false;
      let r = null;
      try {
        r = await fetchFn(o.endpoint + '/v1/events', {
          method: 'POST',
          body: JSON.stringify({ events: batch }),
          keepalive: true,
          credentials: 'include',
        });
      } catch (e) {
        // network error: r stays null
      }
      const status = r ? r.status : 0;
      if (status >= 200 && status < 300) return false;
      if (status === 400 && refused++ < 10) {
        // Nothing of a refused request is stored and the error names the bad event
        // ($.events[3].quantity): drop that one, send the others again.
        const j = await r.json().catch(noop);
        const bad = Object.keys((j && j.error && j.error.fields) || {})
          .map((k) => /^\$\.events\[(\d+)\]/.exec(k))
          .filter(Boolean)
          .map((m) => batch[+m[1]]);
        if (bad.length && bad.length < batch.length) {
          drop(bad);
          continue;
        }
      }
      if (!retryable(status)) return false; // other 4xx: sending again cannot help
      if (++attempt >= ATTEMPTS) return true;
      const ra = r && r.headers && parseFloat(r.headers.get('Retry-After'));
      await new Promise((res) => later(res, backoff(attempt - 1, random(), ra)));
    }
  }

  // The page is going away (or hidden): hand everything to sendBeacon, which outlives it.
  function hide() {
    let todo = q.slice();
    while (todo.length && nav.sendBeacon) {
      const batch = cut(todo);
      todo = todo.slice(batch.length);
      const body = new Blob([JSON.stringify({ events: batch })], { type: 'text/plain' });
      if (!nav.sendBeacon(o.endpoint + '/v1/events', body)) break;
      drop(batch); // events in flight too: the gateway stores an event_id once
    }
    persist();
  }

  // A page_view for the current page, once, when the browsing purpose is granted.
  function view() {
    if (!o.autoPageViews || !browsing() || viewed === here) return;
    viewed = here;
    const web = (u) => (/^https?:\/\//.test(u) ? u.slice(0, 2048) : null);
    track('page_view', { url: web(here), referrer: web(ref), title: doc ? doc.title.slice(0, 512) : null });
  }

  // Single-page-app navigation: after the router had its turn (it may set the title).
  function navigated() {
    wait(
      new Promise((res) => later(res, 0)).then(() => {
        if (w.location.href === here) return;
        ref = here;
        here = w.location.href;
        if (state) view();
      }),
    );
  }

  function banner(mode) {
    if (!doc) return Promise.resolve();
    bannerLoad =
      bannerLoad ||
      new Promise((res, rej) => {
        const s = doc.createElement('script');
        s.src = o.bannerUrl || o.endpoint + '/' + BANNER;
        s.async = true;
        s.onload = res;
        s.onerror = () => {
          bannerLoad = null;
          s.remove();
          rej(new Error('ConsentGateway: the banner did not load'));
        };
        doc.head.appendChild(s);
      });
    return bannerLoad.then(() =>
      w.ConsentGatewayBanner({
        policy,
        state,
        lang: o.lang,
        gpc: gpc(),
        mode, // first | reconsent | settings
        grant: (p, src) => consent.grant(p, src, { separately: true }), // it asks separately
      }),
    );
  }

  // Data attributes: data-cg-track="<type>" plus data-cg-<field>="<value>".
  function fieldsOf(el) {
    const f = {};
    for (const a of Array.from(el.attributes)) {
      const name = a.name.slice(8);
      if (a.name.indexOf('data-cg-') || name === 'track') continue;
      f[name] = a.value; // numbers are made numbers once the policy is known (enqueue)
    }
    return f;
  }

  function onClick(e) {
    const el = e.target && e.target.closest && e.target.closest('[data-cg-track]');
    if (el && el.tagName !== 'FORM') {
      track(el.getAttribute('data-cg-track'), fieldsOf(el));
    }
  }

  function onSubmit(e) {
    const form = e.target;
    const type = form.getAttribute && form.getAttribute('data-cg-track');
    if (!type) return;
    const f = fieldsOf(form);
    const input = form.elements.keyword || form.elements.q;
    if (input && input.value) f.keyword = input.value.trim().slice(0, 256);
    track(type, f);
  }

  function settingsLink() {
    if (doc.getElementById('cg-settings-link')) return;
    const b = doc.createElement('button');
    b.id = 'cg-settings-link';
    b.type = 'button';
    b.setAttribute('aria-haspopup', 'dialog');
    b.textContent = zh() ? '隐私设置' : 'Privacy settings';
    b.style.cssText =
      'position:fixed;left:8px;bottom:8px;z-index:2147483646;margin:0;padding:4px 8px;' +
      'font:12px/1.4 system-ui,sans-serif;color:#222;background:#fff;border:1px solid #767676;' +
      'border-radius:4px;opacity:.9;cursor:pointer';
    b.onclick = () => consent.open();
    doc.body.appendChild(b);
  }

  function listen() {
    doc.addEventListener('click', onClick, true); // capture: a page's stopPropagation cannot hide it
    doc.addEventListener('submit', onSubmit, true);
    const h = w.history;
    ['pushState', 'replaceState'].forEach((m) => {
      const orig = h[m];
      h[m] = function () {
        const r = orig.apply(this, arguments);
        navigated();
        return r;
      };
    });
    w.addEventListener('popstate', navigated);
    w.addEventListener('pagehide', hide);
    doc.addEventListener('visibilitychange', () => doc.visibilityState === 'hidden' && hide());
    if (doc.body) settingsLink();
    else doc.addEventListener('DOMContentLoaded', settingsLink);
  }

  // After a choice: the queue follows it and the page view goes out if now allowed.
  function chosen(r) {
    setState(r);
    view();
    if (w && w.CustomEvent) w.dispatchEvent(new w.CustomEvent('cg:consent', { detail: state }));
    return r;
  }

  const consent = {
    get: () => ready().then(() => call('GET', '/v1/consent')).then((s) => (setState(s), state)),
    // A sensitive grant bundled with other decisions needs the person to have been asked
    // for it separately (PIPL art. 29): without {separately: true} (the banner's own UI asks
    // in a section of its own) it is refused before anything is sent. With it, it is sent
    // alone, after the others (separately()): one request after another, the state updated
    // after each. The first failure stops the sequence and rejects; what was recorded before
    // it stays in the state (and the event).
    grant: (purposes, source, asked) =>
      ready().then(() => {
        const p = Object.assign({}, purposes);
        const ad = roleOf(policy, 'advertising');
        if (gpc() && p[ad]) p[ad] = false; // never granted under GPC
        const version = state.current_version || policy.version;
        const parts = separately(p, policy);
        if (parts.length > 1 && !(asked && asked.separately)) {
          const e = new Error('ConsentGateway: a sensitive purpose is granted alone, after asking for it separately');
          e.code = 'separate_consent_required';
          throw e;
        }
        let last = null;
        return parts
          .reduce(
            (prev, part) =>
              prev.then(() => {
                const body = { policy_version: version, purposes: part };
                if (source) body.source = source;
                return call('POST', '/v1/consent', body).then((r) => setState((last = r)));
              }),
            Promise.resolve(),
          )
          .then(
            () => chosen(last),
            (e) => {
              if (last) chosen(last);
              throw e;
            },
          );
      }),
    withdraw: (purposes, source) => {
      if (purposes == null) {
        return ready()
          .then(() => call('DELETE', '/v1/consent' + (source ? '?source=' + encodeURIComponent(source) : '')))
          .then(chosen);
      }
      const p = {};
      [].concat(purposes).forEach((k) => (p[k] = false));
      return consent.grant(p, source);
    },
    open: () => ready().then(() => banner('settings')),
  };

  return {
    version: '1',
    init(opts) {
      if (o) return ready().then(() => state); // once per page
      o = Object.assign({ autoPageViews: true }, opts);
      o.endpoint = String(o.endpoint || '').replace(/\/+$/, '');
      const lang = o.lang || (doc && doc.documentElement.lang) || '';
      o.lang = /^zh/i.test(lang) ? 'zh' : 'en';
      if (doc) {
        here = w.location.href;
        listen();
      }
      return ready().then(() => state);
    },
    consent,
    track,
    flush,
  };
}

/**
 * Replaces the snippet's stub on `w` with a callable API and replays the stub's queue.
 * `ConsentGateway('consent.open')` calls `api.consent.open()`; it returns what the method
 * returns (a Promise).
 */
export function install(w, sdk) {
  const stub = w.ConsentGateway;
  if (stub && stub.version) return stub; // loaded twice
  const api = function (cmd) {
    let self = api;
    let fn = api;
    String(cmd)
      .split('.')
      .forEach((k) => {
        self = fn;
        fn = fn && fn[k];
      });
    if (typeof fn !== 'function') return Promise.reject(new Error('ConsentGateway: unknown command ' + cmd));
    return fn.apply(self, [].slice.call(arguments, 1));
  };
  Object.assign(api, sdk);
  w.ConsentGateway = api;
  // Replay in order; the stub's Promise (args.r / args.j) gets the result.
  ((stub && stub.q) || []).forEach((args) => {
    new Promise((res) => res(api.apply(null, args))).then(args.r || noop, args.j || noop);
  });
  return api;
}

const g = typeof window !== 'undefined' ? window : null;
const ConsentGateway = g ? install(g, create({ window: g })) : null;
export default ConsentGateway;
