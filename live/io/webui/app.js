// mimicam live: the control page. Plain JavaScript, no build step, no external code.
// Every request carries the per-run token from this page's address (?token=...).
"use strict";

(function () {
  const token = new URLSearchParams(location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  const stream = $("stream");
  stream.src = "/stream.mjpg?token=" + encodeURIComponent(token);
  if (document.body.classList.contains("stream-only")) {
    return;
  }

  const status = $("status");
  const message = $("upload-message");
  const list = $("portraits");
  const thumbs = new Map(); // index -> button
  let state = null;
  let pendingIndex = null;
  let maxBytes = 0;
  let failures = 0;

  function api(path, options) {
    const opts = options || {};
    const headers = Object.assign({ "X-Mimicam-Token": token }, opts.headers || {});
    return fetch(path, Object.assign({}, opts, { headers: headers, cache: "no-store",
                                                  credentials: "omit" }))
      .then((resp) => resp.json().catch(() => ({})).then((body) => {
        if (!resp.ok) {
          const err = new Error(body.error || ("HTTP " + resp.status));
          err.status = resp.status;
          throw err;
        }
        return body;
      }));
  }

  function say(text, kind) {
    message.textContent = text;
    message.className = "message" + (kind ? " " + kind : "");
  }

  function fmt(value, digits) {
    return value === null || value === undefined ? "\u2013" : Number(value).toFixed(digits);
  }

  // -- controls ----------------------------------------------------------------------------------
  function command(action, extra) {
    const body = JSON.stringify(Object.assign({ action: action }, extra || {}));
    return api("/api/command", { method: "POST", body: body,
                                 headers: { "Content-Type": "application/json" } })
      .then(() => refresh())
      .catch((err) => say(err.message, "error"));
  }

  document.querySelectorAll("button[data-action]").forEach((button) => {
    button.addEventListener("click", () => command(button.dataset.action));
  });

  function pick(index) {
    pendingIndex = index;
    render();
    command("portrait", { index: index });
  }

  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    const keys = { c: "recalibrate", p: "passthrough", f: "freeze", o: "overlay" };
    const key = event.key.toLowerCase();
    if (keys[key]) {
      command(keys[key]);
    } else if (key === "b" && !$("background").hidden) {
      command("background");
    } else if (key >= "1" && key <= "9" && state && Number(key) <= state.portraits.length) {
      pick(Number(key) - 1);
    } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      command(event.key === "ArrowLeft" ? "previous" : "next");
    }
  });

  // -- portraits ---------------------------------------------------------------------------------
  function thumbFor(portrait) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.dataset.index = String(portrait.index);
    button.title = (portrait.index < 9 ? "key " + (portrait.index + 1) + ": " : "") + portrait.name;
    const img = document.createElement("img");
    img.alt = portrait.name;
    img.loading = "lazy";
    img.src = "/api/portraits/" + portrait.index + ".jpg?token=" + encodeURIComponent(token);
    const label = document.createElement("span");
    label.textContent = (portrait.index + 1) + ". " + portrait.name;
    button.append(img, label);
    button.addEventListener("click", () => pick(portrait.index));
    const item = document.createElement("li");
    item.append(button);
    list.append(item);
    thumbs.set(portrait.index, button);
  }

  function render() {
    if (!state) {
      return;
    }
    for (const portrait of state.portraits) {
      if (!thumbs.has(portrait.index)) {
        thumbFor(portrait);
      }
    }
    if (pendingIndex === state.current) {
      pendingIndex = null;
    }
    thumbs.forEach((button, index) => {
      button.setAttribute("aria-current", index === state.current ? "true" : "false");
      button.classList.toggle("pending", index === pendingIndex);
    });
    const toggles = { passthrough: "passthrough", freeze: "frozen", overlay: "overlay" };
    for (const [id, key] of Object.entries(toggles)) {
      $(id).setAttribute("aria-pressed", state[key] ? "true" : "false");
    }
    const bg = $("background");
    bg.hidden = !state.background;
    if (state.background) {
      bg.textContent = "Background: " + (state.background.label || "next");
    }
    const stats = state.stats || {};
    const latency = stats.capture_to_send_ms || {};
    $("stat-fps").textContent = fmt(stats.fps, 1);
    $("stat-latency").textContent = latency.median === null || latency.median === undefined
      ? "\u2013" : fmt(latency.median, 0) + " ms (p95 " + fmt(latency.p95, 0) + ")";
    $("stat-dropped").textContent = fmt(stats.dropped_input, 0);
    $("stat-losses").textContent = fmt(stats.tracking_losses, 0);
    $("stat-recalibrations").textContent = fmt(stats.recalibrations, 0);
    $("stat-sent").textContent = fmt(stats.frames_sent, 0);
    const upload = state.upload || {};
    maxBytes = upload.enabled ? upload.max_bytes : 0;
    $("upload-input").disabled = !upload.enabled;
    $("add-label").classList.toggle("disabled", !upload.enabled);
    $("drop-hint").textContent = upload.enabled
      ? "Drop a picture here (JPEG, PNG, WebP or BMP with a face, up to "
        + Math.floor(upload.max_bytes / 1048576) + " MB) to add it to " + upload.folder + "."
      : upload.why_not;
    const current = state.portraits[state.current];
    const parts = [state.engine + " engine", current ? current.name : ""];
    if (state.camera_lost) parts.push("camera lost");
    else if (!state.calibrated) parts.push("calibrating: hold still");
    status.textContent = parts.filter(Boolean).join(" \u00b7 ");
    status.className = "status " + (state.camera_lost ? "down" : "live");
  }

  function refresh() {
    return api("/api/state").then((data) => {
      state = data;
      failures = 0;
      render();
    }).catch((err) => {
      failures += 1;
      if (err.status === 403) {
        status.textContent = "refused: open this page from the link 'mimicam live' printed";
      } else if (failures > 1) {
        status.textContent = "disconnected: is mimicam live still running?";
      }
      status.className = "status down";
    });
  }

  // -- adding a portrait -------------------------------------------------------------------------
  const ACCEPTED = /\.(jpe?g|png|webp|bmp)$/i;

  function upload(file) {
    if (!file) {
      return;
    }
    if (!maxBytes) {
      say(state && state.upload ? state.upload.why_not : "uploads are off", "error");
      return;
    }
    if (file.size > maxBytes) {
      say(file.name + ": too large (" + (file.size / 1048576).toFixed(1) + " MB; at most "
          + Math.floor(maxBytes / 1048576) + " MB)", "error");
      return;
    }
    if (file.type && !file.type.startsWith("image/") && !ACCEPTED.test(file.name)) {
      say(file.name + ": not a picture (JPEG, PNG, WebP or BMP)", "error");
      return;
    }
    say("Adding " + file.name + "\u2026 (looking for a face)");
    api("/api/portraits", { method: "POST", body: file,
                            headers: { "Content-Type": "application/octet-stream" } })
      .then((result) => {
        say((result.added ? "Added " : "Already there: ") + file.name + " as " + result.name
            + "; switching to it.", "ok");
        pendingIndex = result.index;
        return refresh();
      })
      .catch((err) => say(file.name + ": " + err.message, "error"));
  }

  $("upload-input").addEventListener("change", (event) => {
    upload(event.target.files[0]);
    event.target.value = "";
  });

  const zone = document.querySelector(".library");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    $("dropzone").classList.add("over");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) {
      $("dropzone").classList.remove("over");
    }
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    $("dropzone").classList.remove("over");
    const files = event.dataTransfer ? event.dataTransfer.files : null;
    if (files && files.length) {
      upload(files[0]);
    }
  });
  // a picture dropped anywhere else must not replace this page
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  refresh();
  setInterval(refresh, 1000);
})();
