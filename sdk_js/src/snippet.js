// The snippet a site pastes in <head>, inside <script>, with its own options in the last
// argument. It defines ConsentGateway as a stub that queues its arguments (the SDK replays
// them when it loads, in order) and returns a Promise of the command's result, queues init
// first, and loads <endpoint>/sdk.js without blocking the page.
// ES5 on purpose: it runs before anything else. build.mjs minifies it to dist/snippet.min.js
// (budget: under 600 bytes), which is what README.md shows.
(function (w, d, o) {
  var cg = (w.ConsentGateway =
    w.ConsentGateway ||
    function () {
      var a = arguments;
      return new Promise(function (resolve, reject) {
        a.r = resolve; // the SDK settles it with the command's result
        a.j = reject;
        (cg.q = cg.q || []).push(a);
      });
    });
  cg('init', o);
  var s = d.createElement('script');
  s.async = true;
  s.src = o.endpoint + '/sdk.js';
  d.head.appendChild(s);
})(window, document, { endpoint: 'https://t.example.com', lang: 'zh' });
