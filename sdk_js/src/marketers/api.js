// The dashboard's calls to the gateway (same origin, JSON), and its one way of failing: an
// ApiError with the gateway's {"error": {code, message, fields}}, the HTTP status (0 when the
// request never got an answer) and Retry-After.
//
// The session is an HttpOnly cookie the page cannot read; the CSRF token of the session is
// kept in this closure only and sent as X-CSRF-Token on every write. The API key passes
// through signIn() once and is kept nowhere.
//
// Queries (estimate, breakdown) go one at a time: a key's queries are serialised by the
// gateway anyway, and 409 key_busy is retried once after its Retry-After. A 403 csrf_failed
// fetches the session's token again and retries once; a 401 not_signed_in on any call but
// the session's own tells onSignedOut (the page goes back to its sign-in form).

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const e = (body && body.error) || {};
    super(e.message || (status ? 'HTTP ' + status : 'network error'));
    this.name = 'ApiError';
    this.status = status;
    this.code = e.code || (status ? 'http_' + status : 'network_error');
    this.fields = e.fields || {};
    this.retryAfter = retryAfter;
  }
}

const SESSION = '/marketers/session';
const MAX_WAIT_S = 10; // key_busy: never wait longer than this for the retry

export function createApi(opts) {
  const fetchImpl = opts.fetch;
  const sleep = opts.sleep || ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  const onSignedOut = opts.onSignedOut || (() => {});
  let csrf = null;
  let queue = Promise.resolve();

  async function send(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
    let resp;
    try {
      resp = await fetchImpl(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, { error: { code: 'network_error', message: String((e && e.message) || e) } });
    }
    let data = null;
    if (resp.status !== 204) {
      try {
        data = await resp.json();
      } catch (e) {
        data = null;
      }
    }
    if (resp.ok) return data;
    const wait = Number(resp.headers && resp.headers.get && resp.headers.get('Retry-After'));
    throw new ApiError(resp.status, data, isFinite(wait) && wait >= 0 ? wait : null);
  }

  async function call(method, path, body) {
    try {
      return await send(method, path, body);
    } catch (err) {
      if (err.code === 'key_busy') {
        await sleep(Math.min(err.retryAfter == null ? 1 : err.retryAfter, MAX_WAIT_S) * 1000);
        return send(method, path, body).catch(signedOut(path));
      }
      if (err.code === 'csrf_failed' && path !== SESSION) {
        const s = await send('GET', SESSION).catch(signedOut(path));
        csrf = s.csrf;
        return send(method, path, body).catch(signedOut(path));
      }
      return signedOut(path)(err);
    }
  }

  // A session that ended under a query: the page learns it, and the call still fails.
  const signedOut = (path) => (err) => {
    if (err.code === 'not_signed_in' && path !== SESSION) {
      csrf = null;
      onSignedOut(err);
    }
    throw err;
  };

  const started = (s) => {
    csrf = s && s.csrf;
    return s;
  };

  // One query at a time: the next starts when the previous one ended, however it ended.
  function query(path, body) {
    const run = queue.then(() => call('POST', path, body));
    queue = run.catch(() => {});
    return run;
  }

  return {
    /** GET /marketers/session: the signed-in key's {key: {name}, csrf}, or 401 not_signed_in. */
    session: () => send('GET', SESSION).then(started),
    /** POST /marketers/session with the key (sent once, kept nowhere). */
    signIn: (key) => send('POST', SESSION, { key }).then(started),
    /** DELETE /marketers/session: the cookie is cleared. */
    signOut: () =>
      call('DELETE', SESSION).then(
        () => (csrf = null),
        (err) => {
          csrf = null;
          if (err.status !== 401) throw err;
        },
      ),
    dimensions: () => call('GET', '/marketers/api/dimensions'),
    account: () => call('GET', '/marketers/api/account'),
    estimate: (filters) => query('/marketers/api/estimate', { filters }),
    breakdown: (by, filters) => query('/marketers/api/breakdown', { by, filters }),
    signedIn: () => csrf != null,
  };
}
