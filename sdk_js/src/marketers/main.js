// The marketers' dashboard (/marketers): the entry point. The page's shell
// (gateway/web/templates/marketers.html) holds <main id="app" data-lang="zh|en">; this builds
// the rest: a header before it (the key signed in, sign out, the language switch) and, in it,
// the sign-in form or the dashboard (filters and the estimate, the breakdown charts, the
// budget and recent queries).
//
// At load, GET /marketers/session resumes a session the cookie still holds; when a session
// ends under a query (401 not_signed_in), the page goes back to the sign-in form and says so.

import { createApi } from './api.js';
import { accountView } from './account.js';
import { breakdownsView } from './breakdowns.js';
import { h, fill } from './dom.js';
import { estimateView } from './estimate.js';
import { filtersForm } from './filters.js';
import { signInView } from './signin.js';
import { errorText, words } from './words.js';

function start(app) {
  const lang = app.getAttribute('data-lang') === 'en' ? 'en' : 'zh';
  const t = words(lang);
  let turn = 0; // a sign-in or sign-out makes answers still on their way obsolete
  let mode = null; // 'signin' | 'dashboard'
  let dashboard = null; // {destroy()} of the dashboard shown

  const api = createApi({
    fetch: (url, init) => window.fetch(url, init),
    onSignedOut: () => showSignIn(t.errors.not_signed_in),
  });

  const who = h('span', { id: 'who', class: 'who', hidden: true });
  const signOut = h('button', { type: 'button', id: 'signout', class: 'secondary small', hidden: true }, t.signOut);
  const langLink = h('a', { id: 'lang-switch', href: t.other.href, lang: t.other.lang, hreflang: t.other.lang }, t.other.text);
  const notice = h('p', { id: 'notice', class: 'notice', role: 'status' });
  const view = h('div', { id: 'view' }, h('p', { class: 'muted loading' }, t.loading));
  // The header goes before <main>: a banner landmark of its own.
  const header = h('header', { class: 'top' }, [
    h('div', { class: 'brand' }, [h('h1', null, t.title), h('p', { class: 'tagline' }, t.tagline)]),
    h('div', { class: 'tools' }, [who, signOut, langLink]),
  ]);
  app.parentNode.insertBefore(header, app);
  fill(app, [notice, view]);

  function showSignIn(message) {
    turn++;
    if (dashboard) dashboard.destroy();
    dashboard = null;
    who.hidden = signOut.hidden = true;
    const form = signInView(api, t, lang, signedIn);
    mode = 'signin';
    fill(view, form.el);
    form.say(message || '');
    form.focus();
  }

  function signedIn(session) {
    const mine = ++turn;
    mode = 'dashboard';
    fill(who, t.signedInAs(session.key.name));
    who.hidden = signOut.hidden = false;
    notice.textContent = '';
    fill(view, h('p', { class: 'muted loading' }, t.loading));
    api.dimensions().then(
      (dims) => mine === turn && showDashboard(dims, mine),
      (err) => {
        if (mine !== turn || err.code === 'not_signed_in') return;
        const retry = h('button', { type: 'button', class: 'secondary' }, t.retry);
        retry.addEventListener('click', () => signedIn(session));
        fill(view, h('div', { class: 'card' }, [h('p', { class: 'error', role: 'alert' }, errorText(err, 100, lang)), retry]));
      },
    );
  }

  function showDashboard(dims, mine) {
    const estimate = estimateView(t, lang);
    const account = accountView(t, lang);
    const refresh = () =>
      api.account().then(
        (a) => mine === turn && account.show(a, dims),
        (err) => mine === turn && err.code !== 'not_signed_in' && account.error(err, dims.k),
      );
    const after = (answer) => {
      if (mine !== turn) return;
      if (answer) account.budgetLeft(answer.budget_left);
      refresh();
    };
    const form = filtersForm(dims, t, lang, () => {
      const filters = form.read();
      form.showErrors(null);
      form.busy(true);
      estimate.working();
      api
        .estimate(filters)
        .then(
          (answer) => {
            if (mine !== turn) return;
            estimate.show(answer, filters, dims);
            after(answer);
          },
          (err) => {
            if (mine !== turn || err.code === 'not_signed_in') return;
            estimate.error(err, dims);
            if (err.code === 'validation_failed') form.showErrors(err.fields);
            after(null);
          },
        )
        .then(() => form.busy(false));
    });
    const charts = breakdownsView({ api, dims, t, lang, filters: form.read, done: after });
    dashboard = charts;

    const heading = h('h2', { id: 'filters-h', tabindex: '-1' }, t.filters);
    fill(
      view,
      h('div', { class: 'dashboard' }, [
        h('div', { class: 'main-col' }, [
          h('section', { id: 'audience', class: 'card', 'aria-labelledby': 'filters-h' }, [
            heading,
            h('p', { class: 'muted small' }, t.filtersHint),
            form.el,
            estimate.el,
          ]),
          h('section', { id: 'breakdowns', class: 'card', 'aria-labelledby': 'breakdowns-h' }, [
            h('h2', { id: 'breakdowns-h' }, t.breakdowns),
            h('p', { class: 'muted small' }, t.breakdownsHint),
            charts.el,
          ]),
        ]),
        h('aside', { class: 'side-col', 'aria-labelledby': 'budget-h' }, account.el),
      ]),
    );
    heading.focus();
    refresh();
  }

  signOut.addEventListener('click', () => {
    notice.textContent = '';
    api.signOut().then(
      () => showSignIn(''),
      (err) => {
        if (mode === 'dashboard') notice.textContent = errorText(err, 100, lang);
      },
    );
  });

  api.session().then(
    (session) => signedIn(session),
    (err) => showSignIn(err.status === 401 ? '' : errorText(err, 100, lang)),
  );
}

const app = document.getElementById('app');
if (app) start(app);
