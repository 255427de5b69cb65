// The sign-in form: the API key is read from its password field, the field is emptied at
// once, and the key goes out in one request (POST /marketers/session), which answers with
// an HttpOnly session cookie. The key is kept nowhere: not in a variable that outlives the
// request, not in storage, not in a cookie a script could read.

import { h } from './dom.js';
import { errorText } from './words.js';

export function signInView(api, t, lang, onSignedIn) {
  const input = h('input', {
    type: 'password',
    id: 'key',
    name: 'key',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'signin-intro key-error',
  });
  const error = h('p', { id: 'key-error', class: 'error', role: 'alert' });
  const button = h('button', { type: 'submit', id: 'signin-button', class: 'primary' }, t.signInButton);
  const form = h('form', { id: 'signin', class: 'card signin', 'aria-labelledby': 'signin-h', novalidate: true }, [
    h('h2', { id: 'signin-h' }, t.signIn),
    h('p', { id: 'signin-intro' }, t.signInIntro),
    h('label', { for: 'key' }, t.keyLabel),
    h('div', { class: 'signin-row' }, [input, button]),
    error,
  ]);
  let busy = false;

  function say(text) {
    error.textContent = text || '';
    if (text) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (busy) return;
    const key = input.value.trim();
    input.value = '';
    if (!key) {
      say(t.keyMissing);
      input.focus();
      return;
    }
    busy = true;
    button.setAttribute('aria-disabled', 'true');
    button.textContent = t.signingIn;
    say('');
    api.signIn(key).then(
      (session) => {
        busy = false;
        onSignedIn(session);
      },
      (err) => {
        busy = false;
        button.removeAttribute('aria-disabled');
        button.textContent = t.signInButton;
        say(errorText(err, 100, lang));
        input.focus();
      },
    );
  });

  return {
    el: form,
    say,
    focus: () => input.focus(),
  };
}
