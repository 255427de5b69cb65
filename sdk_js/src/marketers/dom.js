// The one DOM helper of the dashboard: h('p', {id: 'x', hidden: true}, ['text', child]).
// Attributes only (never a style attribute: the page's CSP forbids inline styles); true
// sets an empty attribute, null/false/undefined leave it out; children may nest in arrays.

export function h(tag, attrs, kids) {
  const el = document.createElement(tag);
  for (const k in attrs || {}) {
    const v = attrs[k];
    if (v === true) el.setAttribute(k, '');
    else if (v != null && v !== false) el.setAttribute(k, String(v));
  }
  const add = (c) => (Array.isArray(c) ? c.forEach(add) : c != null && c !== false && el.append(c));
  add(kids);
  return el;
}

/** Replaces an element's children. */
export function fill(el, kids) {
  el.replaceChildren();
  const add = (c) => (Array.isArray(c) ? c.forEach(add) : c != null && c !== false && el.append(c));
  add(kids);
  return el;
}
