/* The review page's controls, on top of the storyboard's own script.
 *
 * Each take gets pick, reject and a note; arrows move between takes, p picks,
 * x rejects, space plays or pauses. Every mark is a POST to the server, which
 * drops it into the run's review inbox. Once a second the page asks the server
 * for the run's state: marks made elsewhere show, a take whose card changed
 * (it finished, its video arrived) is drawn again from the server's HTML, and
 * "play the cut" plays the takes the server chose, one after another.
 * The session token comes from the page's own URL and goes in a header.
 */
(function () {
  "use strict";
  var token = new URLSearchParams(location.search).get("token") || "";
  var byJob = {};
  var order = [];
  var sigs = {};
  var cut = [];
  var current = null;
  var polled = false;
  var live = document.createElement("span");
  live.id = "live";
  var newer = false;

  function api(path, body) {
    var init = { headers: { "X-Batchkling-Token": token }, cache: "no-store" };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw new Error(j.error || ("HTTP " + r.status)); }
        return j;
      });
    });
  }

  function button(cls, text, title) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.textContent = text;
    b.title = title;
    b.tabIndex = -1;
    return b;
  }

  function decorate(card) {
    var job = card.getAttribute("data-job");
    var box = document.createElement("div");
    box.className = "review";
    var pick = button("do-pick", "pick", "pick this take for its shot (p)");
    var reject = button("do-reject", "reject", "never use this take (x)");
    var note = document.createElement("textarea");
    note.className = "note-input";
    note.rows = 2;
    note.placeholder = "note";
    note.setAttribute("aria-label", "note on " + job);
    var old = card.querySelector(".take-note");
    note.value = old ? old.textContent : "";
    var save = button("do-note", "save note", "save the note (Ctrl+Enter)");
    pick.addEventListener("click", function () { select(card); togglePick(card); });
    reject.addEventListener("click", function () { select(card); toggleReject(card); });
    save.addEventListener("click", function () { saveNote(card); });
    note.addEventListener("input", function () { note.setAttribute("data-dirty", "1"); });
    note.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); saveNote(card); }
      if (e.key === "Escape") { card.focus(); }
    });
    box.append(pick, reject, note, save);
    card.appendChild(box);
    card.tabIndex = 0;
    card.addEventListener("click", function (e) {
      if (!e.target.closest(".review")) { select(card); }
    });
    byJob[job] = card;
    order.push(card);
    labels(card);
  }

  function labels(card) {
    card.querySelector(".do-pick").textContent =
      card.classList.contains("picked") ? "unpick" : "pick";
    card.querySelector(".do-reject").textContent =
      card.classList.contains("rejected") ? "unreject" : "reject";
  }

  function badge(card, cls, text, on) {
    var el = card.querySelector("header ." + cls);
    if (on && !el) {
      el = document.createElement("span");
      el.className = cls;
      el.textContent = text;
      card.querySelector("header .badge").before(el);
    } else if (!on && el) {
      el.remove();
    }
  }

  function showMarks(card, m) {
    card.classList.toggle("picked", m.picked);
    card.classList.toggle("rejected", m.rejected);
    badge(card, "pick", "picked", m.picked);
    badge(card, "reject", "rejected", m.rejected);
    var p = card.querySelector(".take-note");
    if (m.note && !p) {
      p = document.createElement("p");
      p.className = "take-note";
      card.querySelector("header").after(p);
    }
    if (p && !m.note) { p.remove(); } else if (p) { p.textContent = m.note; }
    var input = card.querySelector(".note-input");
    if (input !== document.activeElement && !input.hasAttribute("data-dirty")) {
      input.value = m.note;
    }
    labels(card);
  }

  function marksOf(card) {
    var p = card.querySelector(".take-note");
    return {
      picked: card.classList.contains("picked"),
      rejected: card.classList.contains("rejected"),
      note: p ? p.textContent : ""
    };
  }

  // Marks are sent one at a time, in the order they were made, so that the ledger
  // holds them in that order; a state read begun before the last mark was saved
  // does not overwrite what the page already shows of it.
  var queue = Promise.resolve();
  var unsaved = 0;
  var generation = 0;
  function mark(card, body) {
    body.job = card.getAttribute("data-job");
    unsaved += 1;
    generation += 1;
    queue = queue.then(function () {
      return api("/api/mark", body).catch(function (err) {
        live.textContent = "not saved: " + err.message;
        live.className = "down";
      });
    }).then(function () {
      unsaved -= 1;
      generation += 1;
      if (!unsaved) { refresh(); }
    });
    return queue;
  }

  function togglePick(card) {
    var on = !card.classList.contains("picked");
    if (on) {
      card.closest(".shot").querySelectorAll(".card.picked").forEach(function (other) {
        showMarks(other, Object.assign(marksOf(other), { picked: false }));
      });
    }
    var was = marksOf(card);
    showMarks(card, Object.assign(was, { picked: on, rejected: on ? false : was.rejected }));
    return mark(card, { event: "picked", on: on });
  }

  function toggleReject(card) {
    var on = !card.classList.contains("rejected");
    var was = marksOf(card);
    showMarks(card, Object.assign(was, { rejected: on, picked: on ? false : was.picked }));
    return mark(card, { event: "rejected", on: on });
  }

  function saveNote(card) {
    var input = card.querySelector(".note-input");
    input.removeAttribute("data-dirty");
    showMarks(card, Object.assign(marksOf(card), { note: input.value.trim() }));
    return mark(card, { event: "noted", note: input.value.trim() });
  }

  function select(card) {
    if (!card) { return; }
    if (current) { current.classList.remove("current"); }
    current = card;
    card.classList.add("current");
    if (!card.contains(document.activeElement)) { card.focus({ preventScroll: true }); }
    card.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function move(step) {
    var shown = order.filter(function (c) { return c.offsetParent !== null; });
    if (!shown.length) { return; }
    var at = shown.indexOf(current);
    var next = at < 0 ? 0 : Math.min(shown.length - 1, Math.max(0, at + step));
    select(shown[next]);
  }

  function playPause(card) {
    var v = card && card.querySelector("video");
    if (!v) { return; }
    if (v.paused) { v.play(); } else { v.pause(); }
  }

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || t.closest("textarea, input, select")) { return; }
    if (cutBox && !cutBox.hidden) {
      if (e.key === "Escape") { stopCut(); }
      return;
    }
    var keys = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
    if (e.key in keys) {
      move(keys[e.key]);
    } else if (e.key === "p" && current) {
      togglePick(current);
    } else if (e.key === "x" && current) {
      toggleReject(current);
    } else if (e.key === " ") {
      playPause(current);
    } else {
      return;
    }
    e.preventDefault();
  });

  function redraw(card) {
    var job = card.getAttribute("data-job");
    return api("/api/card?job=" + encodeURIComponent(job)).then(function (r) {
      var t = document.createElement("template");
      t.innerHTML = r.html;
      var fresh = t.content.firstElementChild;
      var box = card.querySelector(".review");
      var keep = card.classList.contains("current");
      card.className = fresh.className + (keep ? " current" : "");
      card.setAttribute("data-state", fresh.getAttribute("data-state"));
      card.setAttribute("style", fresh.getAttribute("style"));
      card.replaceChildren.apply(card, Array.prototype.slice.call(fresh.childNodes));
      card.appendChild(box);
      labels(card);
    });
  }

  function counts(found) {
    Object.keys(found).forEach(function (s) {
      var chip = document.querySelector('.chip[data-state="' + s + '"]');
      if (chip) {
        chip.textContent = s + " " + found[s].toLocaleString("en-US");
        chip.classList.toggle("zero", !found[s]);
      }
    });
  }

  function apply(doc, since) {
    var marksToo = !unsaved && since === generation;
    doc.jobs.forEach(function (j) {
      var card = byJob[j.job];
      if (!card) { newer = true; return; }
      var changed = polled ? sigs[j.job] !== j.sig : card.getAttribute("data-state") !== j.state;
      sigs[j.job] = j.sig;
      if (changed) {
        redraw(card).then(function () { if (marksToo) { showMarks(card, j); } });
      } else if (marksToo) {
        showMarks(card, j);
      }
    });
    polled = true;
    if (marksToo) { version = doc.version; }
    cut = doc.cut;
    counts(doc.counts);
    playCut.disabled = !cut.length;
    alive();
  }

  function alive() {
    live.className = "up";
    live.textContent = "live · " + new Date().toLocaleTimeString() +
      (newer ? " · new takes: reload the page" : "");
  }

  // One read at a time: a refresh asked for while one is under way follows it.
  // The server answers "same" while nothing changed since the version given.
  var timer = null;
  var reading = false;
  var again = false;
  var version = "";
  function refresh() {
    if (reading) { again = true; return; }
    clearTimeout(timer);
    reading = true;
    var since = generation;
    api("/api/state?since=" + encodeURIComponent(version)).then(function (doc) {
      if (doc.same) { alive(); } else { apply(doc, since); }
    }, function (err) {
      live.className = "down";
      live.textContent = "not live: " + err.message;
    }).then(function () {
      reading = false;
      if (again) { again = false; refresh(); } else { timer = setTimeout(refresh, 1000); }
    });
  }

  var cutBox = document.createElement("div");
  cutBox.id = "cut";
  cutBox.hidden = true;
  var cutTitle = document.createElement("p");
  cutTitle.className = "cut-title";
  var cutVideo = document.createElement("video");
  cutVideo.id = "cut-video";
  cutVideo.controls = true;
  cutVideo.playsInline = true;
  var close = button("cut-close", "close", "stop the cut (Esc)");
  close.tabIndex = 0;
  var inner = document.createElement("div");
  inner.className = "cut-box";
  inner.append(cutTitle, cutVideo, close);
  cutBox.appendChild(inner);
  var playing = -1;
  var playList = [];

  function playAt(i) {
    playing = i;
    if (i >= playList.length) {
      cutBox.removeAttribute("data-playing");
      cutTitle.textContent = "end of the cut (" + playList.length + " shots)";
      return;
    }
    var take = playList[i];
    cutBox.setAttribute("data-playing", take.job);
    cutTitle.textContent = take.shot + " · " + take.job + " (" + (i + 1) + " of " +
      playList.length + ")";
    cutVideo.src = take.src;
    var started = cutVideo.play();
    if (started && started.catch) { started.catch(function () {}); }
  }

  function stopCut() {
    cutVideo.pause();
    cutVideo.removeAttribute("src");
    cutVideo.load();
    cutBox.hidden = true;
    cutBox.remove();  // in the page only while it plays
    playing = -1;
    if (current) { current.focus({ preventScroll: true }); }
  }

  cutVideo.addEventListener("ended", function () {
    if (playing >= 0) { playAt(playing + 1); }
  });
  close.addEventListener("click", stopCut);
  var playCut = button("play-cut", "\u25b6 play the cut",
    "the picked take of every shot (else its first done one), in order");
  playCut.id = "play-cut";
  playCut.tabIndex = 0;
  playCut.disabled = true;
  playCut.addEventListener("click", function () {
    playList = cut.slice();
    cutBox.setAttribute("data-cut", playList.map(function (t) { return t.job; }).join(" "));
    cutBox.hidden = false;
    document.body.appendChild(cutBox);
    playAt(0);
  });
  var filters = document.querySelector(".filters");
  filters.prepend(playCut);
  filters.appendChild(live);

  document.querySelectorAll(".card").forEach(decorate);
  if (order.length) { select(order[0]); }
  refresh();
})();
