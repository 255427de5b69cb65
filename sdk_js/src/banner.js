// The consent banner and settings dialog, loaded by the SDK only when it is needed (no
// recorded choice, a policy change to agree to, or consent.open()). It defines
// window.ConsentGatewayBanner(ctx), which the SDK calls with
//   {policy, state, lang: 'zh'|'en', gpc, mode: 'first'|'reconsent'|'settings', grant}
// where grant(purposes, source) is the SDK's consent.grant (it records the choice and lets
// the SDK proceed). Everything shown comes from the policy document in the chosen language.

// The clause of the policy each purpose rests on is cited as that language's policy numbers
// it (`clause_text` of the policy document: 第二条第（二）款第2–4项 / 2(2) items 2–4).
const TEXT = {
  zh: {
    first: '您的隐私选择',
    reconsent: '隐私政策已更新',
    settings: '隐私设置',
    intro:
      '我们仅在您同意的范围内收集和使用您的个人信息。除必要功能外，各项用途默认关闭，您可以全部接受、全部拒绝或逐项选择；之后也可以随时点击页面左下角的“隐私设置”进行修改。',
    changed: '以下用途的内容有所调整，请您重新选择：',
    version: (v) => v + ' 版：',
    policy: '查看《隐私政策》全文',
    accept: '全部接受',
    reject: '全部拒绝',
    save: '保存选择',
    close: '关闭',
    sensitive: '敏感个人信息（需单独同意）',
    sensitiveNote: '精确位置属于敏感个人信息，需要您单独开启；点击“全部接受”不会开启此项。',
    gpc: '您的浏览器开启了“全球隐私控制”（GPC），因此商业广告将保持关闭，无法在此开启。',
    cite: (c, n) => '依据隐私政策' + c + '，保存 ' + n + ' 天。',
    login: '此项在您登录时勾选“保持登录”后开启；在此关闭后，已保存的登录会立即失效。',
    error: '未能保存您的选择，请稍后重试。',
  },
  en: {
    first: 'Your privacy choices',
    reconsent: 'Our privacy policy has changed',
    settings: 'Privacy settings',
    intro:
      'We collect and use information only for the purposes you agree to. Apart from what is strictly necessary, every purpose is off until you turn it on: accept all, reject all or choose one by one, and change your mind at any time with "Privacy settings" in the corner of the page.',
    changed: 'What these purposes cover has changed; please choose again:',
    version: (v) => 'Version ' + v + ': ',
    policy: 'Read the full privacy policy',
    accept: 'Accept all',
    reject: 'Reject all',
    save: 'Save choices',
    close: 'Close',
    sensitive: 'Sensitive personal information (asked separately)',
    sensitiveNote: 'Precise location is sensitive personal information: turn it on separately if you wish. "Accept all" does not include it.',
    gpc: 'Your browser sends a Global Privacy Control (GPC) signal, so advertising stays off and cannot be turned on here.',
    cite: (c, n) => ' Policy clause ' + c + ' · kept ' + n + ' days.',
    login: ' Turned on when you log in with "Keep me logged in"; turning it off here ends your saved logins at once.',
    error: 'Your choice could not be saved. Please try again in a moment.',
  },
};

// Scoped to #cg-banner; one <style> element. Buttons share one rule: equally prominent.
const CSS =
  '#cg-banner{position:fixed;top:0;right:0;bottom:0;left:0;z-index:2147483647;display:flex;align-items:flex-end;justify-content:center;background:rgba(0,0,0,.45);font:15px/1.5 system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;color:#1b1b1b;text-align:left}' +
  '#cg-banner *{box-sizing:border-box;margin:0;padding:0;font:inherit;color:inherit;overflow-wrap:break-word}' +
  '#cg-box{width:100%;max-width:42em;max-height:100%;overflow-y:auto;overflow-x:hidden;background:#fff;padding:1.25em;border-radius:10px 10px 0 0;box-shadow:0 -2px 16px rgba(0,0,0,.3)}' +
  '#cg-banner h2{font-size:1.25em;font-weight:700;margin-bottom:.5em}' +
  '#cg-banner h3{font-weight:700}' +
  '#cg-banner p{margin-bottom:.75em}' +
  '#cg-banner ul{list-style:none;margin-bottom:.75em}' +
  '#cg-banner li{padding:.6em 0;border-top:1px solid #ddd}' +
  '#cg-banner li>div{display:flex;align-items:center;gap:.6em}' +
  '#cg-banner label{font-weight:600;flex:1;min-width:0}' +
  '#cg-banner small{display:block;font-size:.87em;color:#444;margin-top:.2em}' +
  '#cg-banner a{color:#1a5fb4;text-decoration:underline}' +
  '#cg-banner input{flex:none;width:2.6em;height:1.4em;appearance:none;-webkit-appearance:none;border-radius:1em;background:#8a8a8a;position:relative;cursor:pointer;transition:background .15s}' +
  '#cg-banner input:before{content:"";position:absolute;top:.15em;left:.15em;width:1.1em;height:1.1em;border-radius:50%;background:#fff;transition:left .15s}' +
  '#cg-banner input:checked{background:#1a5fb4}' +
  '#cg-banner input:checked:before{left:1.35em}' +
  '#cg-banner input:disabled{opacity:.55;cursor:not-allowed}' +
  '#cg-location{border:2px solid #c64600;border-radius:8px;padding:.75em;margin-bottom:.75em}' +
  '#cg-location ul{margin:0}' +
  '#cg-banner [data-cg-gpc],#cg-error{font-size:.87em;background:#fff4d6;border-left:4px solid #b07a00;padding:.4em .6em;margin-top:.4em}' +
  '#cg-error:empty{display:none}' +
  '#cg-actions{position:sticky;bottom:-1.25em;display:grid;grid-template-columns:1fr 1fr 1fr;gap:.6em;background:#fff;padding:.6em 0 1.25em;margin-bottom:-1.25em}' +
  '#cg-actions button{min-height:2.75em;padding:.5em;border:2px solid #1a5fb4;border-radius:6px;background:#1a5fb4;color:#fff;font-weight:600;cursor:pointer}' +
  '#cg-actions button:disabled{opacity:.6;cursor:progress}' +
  '#cg-close{float:right;width:2em;height:2em;border:1px solid #767676;border-radius:6px;background:#fff;font-size:1.1em;cursor:pointer}' +
  '#cg-banner :focus{outline:3px solid #e66100;outline-offset:2px}' +
  '#cg-title:focus{outline:0}' +
  '@media (max-width:480px){#cg-actions{grid-template-columns:1fr;bottom:-1em;padding-bottom:1em;margin-bottom:-1em}#cg-box{padding:1em}}';

function h(tag, attrs, kids) {
  const el = document.createElement(tag);
  for (const k in attrs || {}) {
    const v = attrs[k];
    if (v === true) el.setAttribute(k, '');
    else if (v != null && v !== false) el.setAttribute(k, v);
  }
  const add = (c) => (Array.isArray(c) ? c.forEach(add) : c != null && el.append(c));
  add(kids);
  return el;
}

function open(ctx) {
  const old = document.getElementById('cg-banner');
  if (old) return old.querySelector('#cg-title').focus(); // already open
  const lang = ctx.lang === 'zh' ? 'zh' : 'en';
  const t = TEXT[lang];
  const { policy, state, gpc, mode } = ctx;
  const source = mode === 'settings' ? 'settings' : 'banner';
  const purposes = policy.purposes;
  const needs = state.needs_reconsent || [];
  // A purpose asked when logging in (saved_login) is never offered here: it appears only in
  // the settings, and only while granted, so that it can be turned off where it is seen.
  const login = (p) => purposes[p].asked_at === 'login';
  const granted = (p) => !!(state.purposes[p] || {}).granted;
  // The purposes this dialog decides: only the changed ones when asking again.
  const shown = Object.keys(purposes).filter((p) =>
    login(p) ? mode === 'settings' && granted(p) : mode !== 'reconsent' || needs.indexOf(p) >= 0,
  );
  const optional = shown.filter((p) => !purposes[p].always_on);
  const back = document.activeElement; // focus returns here when the dialog closes

  if (!document.getElementById('cg-style')) {
    document.head.append(h('style', { id: 'cg-style' }, CSS));
  }

  function row(p) {
    const d = purposes[p];
    const fixed = d.always_on;
    const adOff = gpc && d.role === 'advertising';
    const on = fixed || (!adOff && mode === 'settings' && granted(p)); // deny by default
    const id = 'cg-p-' + p;
    const notes = ['cg-d-' + p];
    if (adOff) notes.push('cg-gpc');
    const info = [
      d.description[lang],
      t.cite((d.clause_text || {})[lang] || d.clause, d.retention_days),
      login(p) ? t.login : null,
    ];
    return h('li', null, [
      h('div', null, [
        h('label', { for: id }, d.title[lang]),
        h('input', {
          type: 'checkbox',
          role: 'switch',
          id,
          'data-cg-purpose': p,
          checked: on,
          disabled: fixed || adOff,
          'aria-describedby': notes.join(' '),
        }),
      ]),
      h('small', { id: 'cg-d-' + p }, info),
      adOff ? h('p', { id: 'cg-gpc', 'data-cg-gpc': true }, t.gpc) : null,
    ]);
  }

  const common = shown.filter((p) => !purposes[p].sensitive);
  const sensitive = shown.filter((p) => purposes[p].sensitive);
  const changes =
    mode === 'reconsent'
      ? (policy.history || [])
          .filter((v) => !state.policy_version || v.version > state.policy_version)
          .map((v) => h('p', null, [h('strong', null, t.version(v.version)), v.summary[lang]]))
      : [];
  // The site's privacy policy (POLICY_URL), in a new tab: the choice in progress stays here.
  const url = policy.policy_url;
  const link =
    url && /^(https?:\/\/|\/)/.test(url)
      ? h('p', { id: 'cg-policy' }, h('a', { href: url, target: '_blank', rel: 'noopener' }, t.policy))
      : null;
  const button = (action, label) => h('button', { type: 'button', 'data-cg-action': action }, label);
  const error = h('p', { id: 'cg-error', role: 'alert' });

  const root = h(
    'div',
    { id: 'cg-banner', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'cg-title', 'aria-describedby': 'cg-intro', lang: lang === 'zh' ? 'zh-CN' : 'en' },
    h('div', { id: 'cg-box' }, [
      mode === 'settings' ? h('button', { type: 'button', id: 'cg-close', 'aria-label': t.close }, '×') : null,
      h('h2', { id: 'cg-title', tabindex: '-1' }, t[mode] || t.first),
      h('p', { id: 'cg-intro' }, mode === 'reconsent' ? t.changed : t.intro),
      changes,
      link,
      common.length ? h('ul', null, common.map(row)) : null,
      sensitive.length
        ? h('section', { id: 'cg-location', 'aria-labelledby': 'cg-location-h' }, [
            h('h3', { id: 'cg-location-h' }, t.sensitive),
            h('p', null, t.sensitiveNote),
            h('ul', null, sensitive.map(row)),
          ])
        : null,
      error,
      h('div', { id: 'cg-actions' }, [button('accept-all', t.accept), button('reject-all', t.reject), button('save', t.save)]),
    ]),
  );

  const box = (p) => root.querySelector('[data-cg-purpose="' + p + '"]');
  const buttons = () => root.querySelectorAll('#cg-actions button');

  function close() {
    root.remove();
    document.removeEventListener('focusin', keepFocus, true);
    if (back && back.focus && document.contains(back)) back.focus();
  }

  // Records the choice for the purposes shown; the dialog stays open (with a message) if
  // the gateway could not record it. A purpose asked at login is only ever turned off here
  // (left on, it is not sent: the gateway takes its grant from a login form only).
  function choose(action) {
    const chosen = {};
    optional.forEach((p) => {
      const el = box(p);
      if (action === 'accept-all' && !purposes[p].sensitive && !login(p) && !el.disabled) el.checked = true;
      if (action === 'reject-all' && !el.disabled) el.checked = false;
      if (!login(p) || !el.checked) chosen[p] = el.checked;
    });
    buttons().forEach((b) => (b.disabled = true));
    error.textContent = '';
    return ctx.grant(chosen, source).then(close, () => {
      buttons().forEach((b) => (b.disabled = false));
      error.textContent = t.error;
    });
  }

  root.addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b) return;
    if (b.id === 'cg-close') close();
    else if (b.getAttribute('data-cg-action')) choose(b.getAttribute('data-cg-action'));
  });

  root.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' || e.key === 'Esc') {
      // Only the settings opened by the visitor close this way; nothing is recorded.
      if (mode === 'settings') {
        e.preventDefault();
        close();
      }
    } else if (e.key === 'Enter' && e.target.type === 'checkbox') {
      e.preventDefault(); // Space toggles a checkbox natively; Enter does too on a switch
      e.target.click();
    } else if (e.key === 'Tab') {
      // aria-modal: Tab cycles inside the dialog
      const all = Array.from(root.querySelectorAll('a[href],button,input')).filter((el) => !el.disabled);
      const first = all[0];
      const last = all[all.length - 1];
      const at = document.activeElement;
      if (e.shiftKey && (at === first || at === root.querySelector('#cg-title'))) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && at === last) {
        e.preventDefault();
        first.focus();
      }
    }
  });

  // Focus that leaves the dialog some other way (a click outside, a screen reader) comes back.
  function keepFocus(e) {
    if (!root.contains(e.target)) root.querySelector('#cg-title').focus();
  }
  document.addEventListener('focusin', keepFocus, true);

  document.body.append(root);
  root.querySelector('#cg-title').focus();
  return root;
}

window.ConsentGatewayBanner = open;
