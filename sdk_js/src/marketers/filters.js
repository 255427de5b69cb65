// The audience filters: a form built from GET /marketers/api/dimensions (a group of
// checkboxes for each dimension with a closed list of values, a text field for the free
// ones, a select for the activity window), and the body of a query made from it.
//
// Free values are typed, never offered: listing the categories or cities the index holds
// would tell which of them hold anybody at all.

import { h, fill } from './dom.js';
import { labelOf } from './words.js';

/** "BOLT, NUT、 bolt" -> ["BOLT", "NUT", "bolt"]: commas (either width), 、 ; or new lines. */
export function splitValues(text) {
  const out = [];
  for (const part of String(text == null ? '' : text).split(/[,，、;；\n]+/)) {
    const v = part.trim();
    if (v && out.indexOf(v) < 0) out.push(v);
  }
  return out;
}

/** {dim: [values]} and the window ('' | '7' | 7 ...) -> the query's filters: empty
 *  dimensions left out, each value once, the window a number. */
export function filtersBody(chosen, window) {
  const out = {};
  for (const name in chosen || {}) {
    const values = [];
    for (const v of chosen[name] || []) if (v !== '' && v != null && values.indexOf(v) < 0) values.push(v);
    if (values.length) out[name] = values;
  }
  const days = Number(window);
  if (window !== '' && window != null && days > 0) out.active_within_days = days;
  return out;
}

/** The error fields of a 400 validation_failed, per dimension, as text: {province: "未知的值：x"}. */
export function fieldErrors(fields, t) {
  const out = {};
  for (const name in fields || {}) {
    const f = fields[name];
    const unknown = f && typeof f === 'object' && f['unknown values'];
    out[name] = Array.isArray(unknown) ? t.unknownValues(unknown) : typeof f === 'string' ? f : JSON.stringify(f);
  }
  return out;
}

/**
 * The filters form. onSubmit() is called on Enter or the Estimate button (not while busy). Returns
 * {el, read(), busy(on), showErrors(fields), clear()}; read() gives the query's filters.
 */
export function filtersForm(dims, t, lang, onSubmit) {
  const groups = []; // {name, read(), input, error}
  const controls = [];
  for (const name in dims.dimensions) {
    const d = dims.dimensions[name];
    const label = t.dims[name] || name;
    const errId = 'f-' + name + '-error';
    const error = h('p', { class: 'field-error', id: errId });
    if (d.values) {
      const count = h('span', { class: 'chosen' }, t.chosen(0));
      const boxes = d.values.map((v, i) =>
        h('input', { type: 'checkbox', id: 'f-' + name + '-' + i, name, value: v, 'data-dim': name }),
      );
      const update = () => (count.textContent = t.chosen(boxes.filter((b) => b.checked).length));
      boxes.forEach((b) => b.addEventListener('change', update));
      const details = h('details', { class: 'dim', id: 'f-' + name, 'data-dim': name }, [
        h('summary', null, [h('span', { class: 'dim-name' }, label), ' ', count]),
        h('fieldset', { 'aria-describedby': errId }, [
          h('legend', { class: 'visually-hidden' }, label),
          h(
            'div',
            { class: 'options' + (name === 'company_size' ? ' few' : '') },
            boxes.map((b, i) => h('label', { class: 'option', for: b.id }, [b, ' ', labelOf(dims, name, d.values[i], lang)])),
          ),
        ]),
      ]);
      groups.push({ name, read: () => boxes.filter((b) => b.checked).map((b) => b.value), el: details, error, update, boxes });
      controls.push(h('div', { class: 'field field-closed' }, [details, error]));
    } else {
      const hintId = 'f-' + name + '-hint';
      const input = h('input', {
        type: 'text',
        id: 'f-' + name,
        name,
        'data-dim': name,
        autocomplete: 'off',
        spellcheck: 'false',
        'aria-describedby': hintId + ' ' + errId,
      });
      groups.push({ name, read: () => splitValues(input.value), el: input, error, input });
      controls.push(
        h('div', { class: 'field field-free' }, [
          h('label', { for: input.id }, label),
          input,
          h('small', { id: hintId, class: 'hint' }, (t.freeHint && t.freeHint[name]) || t.freeHintOther),
          error,
        ]),
      );
    }
  }
  const windowSelect = h('select', { id: 'f-active', name: 'active_within_days', 'aria-describedby': 'f-active_within_days-error' }, [
    h('option', { value: '' }, t.anyTime),
    (dims.active_within_days || []).map((d) => h('option', { value: String(d) }, t.days(d))),
  ]);
  const windowError = h('p', { class: 'field-error', id: 'f-active_within_days-error' });
  groups.push({ name: 'active_within_days', error: windowError, el: windowSelect });
  const submit = h('button', { type: 'submit', id: 'estimate-button', class: 'primary' }, t.estimate);
  const reset = h('button', { type: 'button', id: 'clear-button', class: 'secondary' }, t.clear);

  const form = h('form', { id: 'filters', novalidate: true }, [
    h('div', { class: 'fields' }, [
      controls,
      h('div', { class: 'field field-free' }, [h('label', { for: 'f-active' }, t.active), windowSelect, windowError]),
    ]),
    h('div', { class: 'actions' }, [submit, reset]),
  ]);

  function read() {
    const chosen = {};
    for (const g of groups) if (g.read) chosen[g.name] = g.read();
    return filtersBody(chosen, windowSelect.value);
  }

  function clear() {
    for (const g of groups) {
      if (g.input) g.input.value = '';
      if (g.boxes) g.boxes.forEach((b) => (b.checked = false));
      if (g.update) g.update();
    }
    windowSelect.value = '';
    showErrors(null);
  }

  function showErrors(fields) {
    const text = fieldErrors(fields, t);
    for (const g of groups) {
      fill(g.error, text[g.name] || null);
      const bad = !!text[g.name];
      const target = g.input || g.el;
      if (bad) target.setAttribute('aria-invalid', 'true');
      else target.removeAttribute('aria-invalid');
      if (bad && g.el.tagName === 'DETAILS') g.el.open = true;
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (submit.getAttribute('aria-disabled') !== 'true') onSubmit();
  });
  reset.addEventListener('click', clear);

  return {
    el: form,
    read,
    clear,
    showErrors,
    // aria-disabled, not disabled: a disabled button would drop the keyboard's focus
    busy(on) {
      if (on) submit.setAttribute('aria-disabled', 'true');
      else submit.removeAttribute('aria-disabled');
      submit.textContent = on ? t.working : t.estimate;
    },
  };
}
