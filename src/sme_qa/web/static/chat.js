/* sme-qa chat behaviour that Gradio has no option for.  Served from /sme-static/ (no inline script).
 *
 * 1. A new question scrolls to its own start (question at the top, answer below it), once,
 *    instead of the chat jumping to the bottom of the source cards.
 * 2. 「复制回答」 (one per answer; the server renders the plain text into a hidden <pre>)
 *    puts readable text on the clipboard.
 * 3. 「导出对话」 downloads the whole conversation as Markdown.
 */
(function () {
  "use strict";

  function chat() { return document.getElementById("sme-chat"); }

  function userMessages(root) {
    return root.querySelectorAll(".message-row.user-row, .message.user");
  }

  // ---- 1. scroll each new question into view at its start
  // The question is pinned at the top while its answer streams in (the content may only
  // become tall enough to scroll later); a wheel, touch or key scroll by the user unpins it.
  var seen = -1;
  var pinned = null;

  function scroller(el) {
    for (var node = el.parentElement; node && node !== document.body; node = node.parentElement) {
      var overflow = getComputedStyle(node).overflowY;
      if (overflow === "auto" || overflow === "scroll") return node;
    }
    return null;
  }

  function pin(row) {
    var box = scroller(row);
    if (box) {
      box.scrollTop += row.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
    }
    var top = row.getBoundingClientRect().top;
    if (top < 0 || top > window.innerHeight - 160) {  // the page itself scrolls (phone): question to the top
      window.scrollBy(0, top - 8);
    }
  }

  function onChange() {
    var root = chat();
    if (!root) return;
    var users = userMessages(root);
    if (seen < 0) { seen = users.length; return; }  // the first render (restored history): leave as is
    if (users.length > seen) {
      var last = users[users.length - 1];
      pinned = last.closest(".message-row") || last;
    } else if (users.length < seen) {
      pinned = null;
    }
    seen = users.length;
    if (pinned && document.contains(pinned)) {
      pin(pinned);
      if (root.querySelectorAll("button.sme-copy").length >= users.length) pinned = null;  // answer complete
    }
  }

  ["wheel", "touchmove", "keydown"].forEach(function (name) {
    window.addEventListener(name, function (event) {
      if (name !== "keydown" || /^(PageUp|PageDown|ArrowUp|ArrowDown|Home|End)$/.test(event.key)) pinned = null;
    }, { passive: true });
  });

  // Gradio writes a chosen 👍/👎 as "Liked"/"Disliked" without translating it.
  var CHOSEN = { Liked: "已标记：有帮助", Disliked: "已标记：没帮助" };
  function translateChosen(root) {
    root.querySelectorAll("button[title='Liked'], button[title='Disliked'], button[aria-label='Liked'], " +
                          "button[aria-label='Disliked']").forEach(function (b) {
      ["title", "aria-label"].forEach(function (name) {
        var value = b.getAttribute(name);
        if (CHOSEN[value]) b.setAttribute(name, CHOSEN[value]);
      });
    });
  }

  function watch() {
    var root = chat();
    if (!root) { setTimeout(watch, 200); return; }
    new MutationObserver(function () { onChange(); translateChosen(root); }).observe(root, {
      childList: true, subtree: true, attributes: true, attributeFilter: ["title", "aria-label"] });
    onChange();
    translateChosen(root);  // a restored 👍/👎 may be drawn before the observer is attached
  }

  // ---- 2. copy one answer as plain text
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { area.remove(); }
    return Promise.resolve();
  }

  // The server puts the answer's plain text (and its question) in hidden <pre> blocks of the same message.
  function copySource(button, cls) {
    var message = button.closest(".message-content") || button.closest(".message") || document;
    var pre = message.querySelector("pre." + cls);
    return pre ? pre.textContent : "";
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("#sme-export")) { window.smeExport(); return; }
    var button = event.target.closest && event.target.closest("button.sme-copy");
    if (!button) return;
    event.preventDefault();
    copyText(copySource(button, "sme-copytext")).then(function () {
      button.textContent = "已复制";
      setTimeout(function () { button.textContent = "复制回答"; }, 1500);
    }, function () { button.textContent = "复制失败"; });
  });

  // ---- 3. export the conversation as Markdown
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  window.smeExport = function () {
    var now = new Date();
    var stamp = now.getFullYear() + "-" + pad(now.getMonth() + 1) + "-" + pad(now.getDate()) + " " +
      pad(now.getHours()) + ":" + pad(now.getMinutes());
    var parts = ["# 专精特新企业新闻问答 · 对话记录", "", "导出于 " + stamp + "，来自 " + location.origin, ""];
    var buttons = document.querySelectorAll("#sme-chat button.sme-copy");
    if (!buttons.length) return;
    buttons.forEach(function (b) {
      parts.push("## 问：" + copySource(b, "sme-copyq"), "");
      copySource(b, "sme-copytext").split("\n").forEach(function (line) {
        parts.push(/^\[\d+\] /.test(line) ? "- " + line : line);
      });
      parts.push("");
    });
    var blob = new Blob([parts.join("\n")], { type: "text/markdown;charset=utf-8" });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "对话记录-" + stamp.replace(/[: ]/g, "") + ".md";
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", watch);
  } else {
    watch();
  }
})();
