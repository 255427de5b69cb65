// src/sdk.js
var BANNER = true ? "sdk-banner.e5fbf98b.js" : "sdk-banner.js";
var MAX_QUEUE = 500;
var MAX_BATCH = 100;
var MAX_BYTES = 6e4;
var ATTEMPTS = 5;
var FLUSH_DELAY = 1e3;
var MAX_AGE = 6 * 864e5;
var KEY = "cg_q";
var NECESSARY = "necessary";
var ENVELOPE = ["event_id", "type", "ts"];
var noop = () => {
};
function retryable(status) {
  return status === 0 || status === 429 || status >= 500;
}
function backoff(attempt, random, retryAfterS) {
  const base = 1e3 * Math.pow(2, attempt);
  return Math.min(Math.max(base / 2 + random * base / 2, (retryAfterS || 0) * 1e3), 6e4);
}
function roleOf(policy, role) {
  const ps = policy && policy.purposes || {};
  for (const p in ps) if (ps[p].role === role) return p;
  return null;
}
function grantedOf(state, gpc, policy) {
  const g2 = {};
  const ps = state && state.purposes || {};
  for (const p in ps) if (ps[p] && ps[p].granted) g2[p] = true;
  if (gpc) {
    const ad = roleOf(policy, "advertising");
    if (!ad) return {};
    delete g2[ad];
  }
  return g2;
}
function minimise(ev, policy, granted) {
  const et = policy && policy.event_types && policy.event_types[ev.type];
  if (!et || !Object.keys(granted).some((p) => p !== NECESSARY)) return null;
  const out = { event_id: ev.event_id, type: ev.type };
  if (ev.ts) out.ts = ev.ts;
  let n = 0;
  for (const k in ev) {
    const v = ev[k];
    if (ENVELOPE.indexOf(k) >= 0 || v == null || v === "") continue;
    const p = et.fields[k] || anyType(policy)[k];
    if (p && granted[p]) {
      out[k] = v;
      n++;
    }
  }
  return n ? out : null;
}
function anyType(policy) {
  if (!policy._any) {
    const m = {};
    for (const p in policy.purposes) {
      const fs = policy.purposes[p].fields || {};
      for (const f in fs) {
        if (fs[f].source === "event" && (fs[f].event_types || []).indexOf("*") >= 0) m[f] = p;
      }
    }
    Object.defineProperty(policy, "_any", { value: m });
  }
  return policy._any;
}
function typeOf(policy, type, field) {
  const et = policy && policy.event_types[type];
  const p = et && (et.fields[field] || anyType(policy)[field]);
  const f = p && policy.purposes[p].fields[field];
  return f && f.type;
}
function separately(purposes, policy) {
  const names = Object.keys(purposes).filter((k) => k !== NECESSARY);
  const ps = policy && policy.purposes || {};
  const alone = names.length > 1 ? names.filter((k) => purposes[k] === true && ps[k] && ps[k].sensitive) : [];
  if (!alone.length) return [purposes];
  const rest = {};
  for (const k in purposes) if (alone.indexOf(k) < 0) rest[k] = purposes[k];
  const out = alone.map((k) => ({ [k]: true }));
  if (names.length > alone.length) out.unshift(rest);
  else Object.assign(out[0], rest);
  return out;
}
function bytes(s) {
  return new TextEncoder().encode(s).length;
}
function cut(list) {
  let size = 12;
  let i = 0;
  while (i < list.length && i < MAX_BATCH) {
    size += bytes(JSON.stringify(list[i])) + 1;
    if (i && size > MAX_BYTES) break;
    i++;
  }
  return list.slice(0, i);
}
function hex(random) {
  const c = typeof crypto !== "undefined" && crypto.getRandomValues;
  const b = c ? crypto.getRandomValues(new Uint8Array(16)) : [];
  let s = "";
  for (let i = 0; i < 16; i++) s += ((c ? b[i] : random() * 256) | 256).toString(16).slice(1);
  return s;
}
function create(env) {
  env = env || {};
  const w = env.window;
  const doc = w && w.document;
  const nav = w && w.navigator || {};
  const fetchFn = env.fetch || ((u, i) => w.fetch(u, i));
  const later = env.setTimeout || ((f, ms) => setTimeout(f, ms));
  const cancel = env.clearTimeout || ((t) => clearTimeout(t));
  const now = env.now || Date.now;
  const random = env.random || Math.random;
  let storage = env.storage;
  if (storage === void 0) {
    try {
      storage = w && w.localStorage;
    } catch (e) {
      storage = null;
    }
  }
  let o = null;
  let policy = null;
  let state = null;
  let loading = null;
  let q = [];
  const busy = /* @__PURE__ */ new Set();
  const pending = /* @__PURE__ */ new Set();
  let running = Promise.resolve();
  let timer = 0;
  let bannerLoad = null;
  let here = w && w.location ? w.location.href : "";
  let ref = doc ? doc.referrer : "";
  let viewed = null;
  const gpc = () => nav.globalPrivacyControl === true || !!(state && state.gpc);
  const granted = () => grantedOf(state, gpc(), policy);
  const browsing = () => !!granted()[roleOf(policy, "browsing")];
  const zh = () => o.lang === "zh";
  const asked = (p) => (policy.purposes[p] || {}).asked_at !== "login";
  function call(method, path, body) {
    if (!o) return Promise.reject(new Error("ConsentGateway: call init first"));
    return fetchFn(o.endpoint + path, {
      method,
      credentials: "include",
      body: body && JSON.stringify(body)
      // a string body is text/plain: no CORS preflight
    }).then(
      (r) => r.json().catch(noop).then((j) => {
        if (r.ok) return j;
        const e = new Error(j && j.error && j.error.message || "HTTP " + r.status);
        e.status = r.status;
        e.body = j;
        throw e;
      })
    );
  }
  function load() {
    return loading || (loading = Promise.all([call("GET", "/v1/policy"), call("GET", "/v1/consent")]).then(
      (r) => {
        policy = r[0];
        let saved = null;
        try {
          saved = JSON.parse(storage.getItem(KEY));
        } catch (e) {
        }
        setState(r[1]);
        restore(saved);
        const ps = state.purposes;
        const mode = !Object.keys(ps).some((p) => ps[p].decided && asked(p)) ? "first" : (state.needs_reconsent || []).filter(asked).length ? "reconsent" : "";
        if (mode) banner(mode).catch(noop);
        view();
      },
      (e) => {
        loading = null;
        throw e;
      }
    ));
  }
  const ready = () => Promise.resolve().then(load);
  function setState(s) {
    state = s.state || s;
    const g2 = granted();
    q = q.filter((e) => {
      const m = minimise(e, policy, g2);
      for (const k in e) if (!m || !(k in m)) delete e[k];
      return m;
    });
    persist();
  }
  function persist() {
    try {
      if (q.length && browsing()) storage.setItem(KEY, JSON.stringify(q));
      else storage.removeItem(KEY);
    } catch (e) {
    }
  }
  function restore(saved) {
    const g2 = granted();
    const ids = q.map((e) => e.event_id);
    const old = (browsing() && Array.isArray(saved) ? saved : []).filter((e) => e && ids.indexOf(e.event_id) < 0 && now() - Date.parse(e.ts) < MAX_AGE).map((e) => minimise(e, policy, g2)).filter(Boolean);
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
  const settle = () => pending.size && Promise.all(Array.from(pending)).then(settle);
  function track(type, fields) {
    const ev = Object.assign({}, fields, { event_id: hex(random), type, ts: new Date(now()).toISOString() });
    return wait(
      ready().then(
        () => enqueue(ev),
        () => false
      )
    );
  }
  function enqueue(ev) {
    for (const k in ev) {
      const t = typeOf(policy, ev.type, k);
      if ((t === "integer" || t === "number") && typeof ev[k] === "string") {
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
    running = running.then(() => o && ready().catch(noop)).then(settle).then(send).catch(noop);
    return running;
  }
  async function send() {
    let todo = q.filter((e) => !busy.has(e));
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
  async function deliver(batch) {
    let refused = 0;
    for (let attempt = 0; ; ) {
      batch = batch.filter((e) => q.indexOf(e) >= 0);
      if (!batch.length) return false;
      let r = null;
      try {
        r = await fetchFn(o.endpoint + "/v1/events", {
          method: "POST",
          body: JSON.stringify({ events: batch }),
          keepalive: true,
          credentials: "include"
        });
      } catch (e) {
      }
      const status = r ? r.status : 0;
      if (status >= 200 && status < 300) return false;
      if (status === 400 && refused++ < 10) {
        const j = await r.json().catch(noop);
        const bad = Object.keys(j && j.error && j.error.fields || {}).map((k) => /^\$\.events\[(\d+)\]/.exec(k)).filter(Boolean).map((m) => batch[+m[1]]);
        if (bad.length && bad.length < batch.length) {
          drop(bad);
          continue;
        }
      }
      if (!retryable(status)) return false;
      if (++attempt >= ATTEMPTS) return true;
      const ra = r && r.headers && parseFloat(r.headers.get("Retry-After"));
      await new Promise((res) => later(res, backoff(attempt - 1, random(), ra)));
    }
  }
  function hide() {
    let todo = q.slice();
    while (todo.length && nav.sendBeacon) {
      const batch = cut(todo);
      todo = todo.slice(batch.length);
      const body = new Blob([JSON.stringify({ events: batch })], { type: "text/plain" });
      if (!nav.sendBeacon(o.endpoint + "/v1/events", body)) break;
      drop(batch);
    }
    persist();
  }
  function view() {
    if (!o.autoPageViews || !browsing() || viewed === here) return;
    viewed = here;
    const web = (u) => /^https?:\/\//.test(u) ? u.slice(0, 2048) : null;
    track("page_view", { url: web(here), referrer: web(ref), title: doc ? doc.title.slice(0, 512) : null });
  }
  function navigated() {
    wait(
      new Promise((res) => later(res, 0)).then(() => {
        if (w.location.href === here) return;
        ref = here;
        here = w.location.href;
        if (state) view();
      })
    );
  }
  function banner(mode) {
    if (!doc) return Promise.resolve();
    bannerLoad = bannerLoad || new Promise((res, rej) => {
      const s = doc.createElement("script");
      s.src = o.bannerUrl || o.endpoint + "/" + BANNER;
      s.async = true;
      s.onload = res;
      s.onerror = () => {
        bannerLoad = null;
        s.remove();
        rej(new Error("ConsentGateway: the banner did not load"));
      };
      doc.head.appendChild(s);
    });
    return bannerLoad.then(
      () => w.ConsentGatewayBanner({
        policy,
        state,
        lang: o.lang,
        gpc: gpc(),
        mode,
        // first | reconsent | settings
        grant: (p, src) => consent.grant(p, src, { separately: true })
        // it asks separately
      })
    );
  }
  function fieldsOf(el) {
    const f = {};
    for (const a of Array.from(el.attributes)) {
      const name = a.name.slice(8);
      if (a.name.indexOf("data-cg-") || name === "track") continue;
      f[name] = a.value;
    }
    return f;
  }
  function onClick(e) {
    const el = e.target && e.target.closest && e.target.closest("[data-cg-track]");
    if (el && el.tagName !== "FORM") {
      track(el.getAttribute("data-cg-track"), fieldsOf(el));
    }
  }
  function onSubmit(e) {
    const form = e.target;
    const type = form.getAttribute && form.getAttribute("data-cg-track");
    if (!type) return;
    const f = fieldsOf(form);
    const input = form.elements.keyword || form.elements.q;
    if (input && input.value) f.keyword = input.value.trim().slice(0, 256);
    track(type, f);
  }
  function settingsLink() {
    if (doc.getElementById("cg-settings-link")) return;
    const b = doc.createElement("button");
    b.id = "cg-settings-link";
    b.type = "button";
    b.setAttribute("aria-haspopup", "dialog");
    b.textContent = zh() ? "隐私设置" : "Privacy settings";
    b.style.cssText = "position:fixed;left:8px;bottom:8px;z-index:2147483646;margin:0;padding:4px 8px;font:12px/1.4 system-ui,sans-serif;color:#222;background:#fff;border:1px solid #767676;border-radius:4px;opacity:.9;cursor:pointer";
    b.onclick = () => consent.open();
    doc.body.appendChild(b);
  }
  function listen() {
    doc.addEventListener("click", onClick, true);
    doc.addEventListener("submit", onSubmit, true);
    const h = w.history;
    ["pushState", "replaceState"].forEach((m) => {
      const orig = h[m];
      h[m] = function() {
        const r = orig.apply(this, arguments);
        navigated();
        return r;
      };
    });
    w.addEventListener("popstate", navigated);
    w.addEventListener("pagehide", hide);
    doc.addEventListener("visibilitychange", () => doc.visibilityState === "hidden" && hide());
    if (doc.body) settingsLink();
    else doc.addEventListener("DOMContentLoaded", settingsLink);
  }
  function chosen(r) {
    setState(r);
    view();
    if (w && w.CustomEvent) w.dispatchEvent(new w.CustomEvent("cg:consent", { detail: state }));
    return r;
  }
  const consent = {
    get: () => ready().then(() => call("GET", "/v1/consent")).then((s) => (setState(s), state)),
    // A sensitive grant bundled with other decisions needs the person to have been asked
    // for it separately (PIPL art. 29): without {separately: true} (the banner's own UI asks
    // in a section of its own) it is refused before anything is sent. With it, it is sent
    // alone, after the others (separately()): one request after another, the state updated
    // after each. The first failure stops the sequence and rejects; what was recorded before
    // it stays in the state (and the event).
    grant: (purposes, source, asked2) => ready().then(() => {
      const p = Object.assign({}, purposes);
      const ad = roleOf(policy, "advertising");
      if (gpc() && p[ad]) p[ad] = false;
      const version = state.current_version || policy.version;
      const parts = separately(p, policy);
      if (parts.length > 1 && !(asked2 && asked2.separately)) {
        const e = new Error("ConsentGateway: a sensitive purpose is granted alone, after asking for it separately");
        e.code = "separate_consent_required";
        throw e;
      }
      let last = null;
      return parts.reduce(
        (prev, part) => prev.then(() => {
          const body = { policy_version: version, purposes: part };
          if (source) body.source = source;
          return call("POST", "/v1/consent", body).then((r) => setState(last = r));
        }),
        Promise.resolve()
      ).then(
        () => chosen(last),
        (e) => {
          if (last) chosen(last);
          throw e;
        }
      );
    }),
    withdraw: (purposes, source) => {
      if (purposes == null) {
        return ready().then(() => call("DELETE", "/v1/consent" + (source ? "?source=" + encodeURIComponent(source) : ""))).then(chosen);
      }
      const p = {};
      [].concat(purposes).forEach((k) => p[k] = false);
      return consent.grant(p, source);
    },
    open: () => ready().then(() => banner("settings"))
  };
  return {
    version: "1",
    init(opts) {
      if (o) return ready().then(() => state);
      o = Object.assign({ autoPageViews: true }, opts);
      o.endpoint = String(o.endpoint || "").replace(/\/+$/, "");
      const lang = o.lang || doc && doc.documentElement.lang || "";
      o.lang = /^zh/i.test(lang) ? "zh" : "en";
      if (doc) {
        here = w.location.href;
        listen();
      }
      return ready().then(() => state);
    },
    consent,
    track,
    flush
  };
}
function install(w, sdk) {
  const stub = w.ConsentGateway;
  if (stub && stub.version) return stub;
  const api = function(cmd) {
    let self = api;
    let fn = api;
    String(cmd).split(".").forEach((k) => {
      self = fn;
      fn = fn && fn[k];
    });
    if (typeof fn !== "function") return Promise.reject(new Error("ConsentGateway: unknown command " + cmd));
    return fn.apply(self, [].slice.call(arguments, 1));
  };
  Object.assign(api, sdk);
  w.ConsentGateway = api;
  (stub && stub.q || []).forEach((args) => {
    new Promise((res) => res(api.apply(null, args))).then(args.r || noop, args.j || noop);
  });
  return api;
}
var g = typeof window !== "undefined" ? window : null;
var ConsentGateway = g ? install(g, create({ window: g })) : null;
var sdk_default = ConsentGateway;
export {
  ATTEMPTS,
  FLUSH_DELAY,
  MAX_BATCH,
  MAX_BYTES,
  MAX_QUEUE,
  backoff,
  create,
  cut,
  sdk_default as default,
  grantedOf,
  install,
  minimise,
  retryable,
  roleOf,
  separately
};
