/* A stand-in for `Worker` on pages opened from file://, where browsers refuse to start a worker from a file URL.
 *
 * mkdocs-material runs its search in a Web Worker; for file:// viewing its offline plugin adds the
 * `iframe-worker` polyfill from a CDN, which an offline site cannot load. This local file takes its place
 * (the plugin skips its CDN script when a polyfill whose name contains "iframe-worker" is configured).
 * Same idea: the worker script runs in a hidden iframe; messages are relayed both ways.
 */
(function () {
  "use strict";
  if (location.protocol !== "file:" || typeof EventTarget !== "function") return;

  // Installed in the iframe before the worker script: worker-side postMessage and a Promise-based importScripts.
  var RUNTIME =
    "postMessage=function(data){parent.postMessage(data,'*')};" +
    "importScripts=function(){var urls=Array.prototype.slice.call(arguments);" +
    "return urls.reduce(function(done,url){return done.then(function(){return new Promise(function(ok,fail){" +
    "var s=document.createElement('script');s.src=url;s.onload=ok;s.onerror=fail;document.body.appendChild(s)})})}," +
    "Promise.resolve())};";

  function FileWorker(url) {
    var target = new EventTarget(), self = this;
    this._target = target;
    this.onmessage = null;
    this.onerror = null;
    var frame = document.createElement("iframe");
    frame.hidden = true;
    document.body.appendChild(frame);
    this._frame = frame;
    var win = frame.contentWindow;
    var loaded;
    this._ready = new Promise(function (ok) { loaded = ok; });
    frame.addEventListener("load", function () { loaded(); });
    win.document.open();
    win.document.write("<html><body><script>" + RUNTIME + "<\/script><script src=\"" +
                       String(url).replace(/"/g, "&quot;") + "\"><\/script></body></html>");
    win.document.close();
    win.addEventListener("load", function () { loaded(); });  // after open(), which drops earlier listeners
    if (win.document.readyState === "complete") loaded();
    this._relay = function (ev) {
      if (ev.source !== win) return;
      var copy = new MessageEvent("message", { data: ev.data });
      target.dispatchEvent(copy);
      if (typeof self.onmessage === "function") self.onmessage(copy);
    };
    window.addEventListener("message", this._relay);
  }
  FileWorker.prototype.addEventListener = function () { return this._target.addEventListener.apply(this._target, arguments); };
  FileWorker.prototype.removeEventListener = function () { return this._target.removeEventListener.apply(this._target, arguments); };
  FileWorker.prototype.dispatchEvent = function (ev) { return this._target.dispatchEvent(ev); };
  FileWorker.prototype.postMessage = function (data) {
    var frame = this._frame;
    this._ready.then(function () {
      if (frame.contentWindow) frame.contentWindow.dispatchEvent(new MessageEvent("message", { data: data }));
    });
  };
  FileWorker.prototype.terminate = function () {
    window.removeEventListener("message", this._relay);
    this._frame.remove();
  };
  window.Worker = FileWorker;
})();
