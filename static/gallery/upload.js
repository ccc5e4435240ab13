// Resumable uploads for the timeline page, over tus (tus-js-client, vendored).
// Without JavaScript the plain form posts to /upload/ instead; this only enhances it.
//
// - Drop files on the upload area or pick them: each gets a progress bar, plus one overall.
// - A dropped connection is retried with backoff, and again when the browser comes back
//   online; the server keeps every byte it received, so an upload resumes where it stopped.
// - After a reload, tus-js-client finds the upload of the same file (its fingerprint is kept
//   in localStorage) and continues it: the page lists what is unfinished.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form || !window.tus || !window.tus.isSupported) return;

  var endpoint = form.getAttribute("data-tus-endpoint");
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var zone = document.getElementById("upload-zone");
  var list = document.getElementById("upload-list");
  var overallBar = document.getElementById("upload-overall");
  var overallText = document.getElementById("upload-overall-text");
  var pending = document.getElementById("upload-pending");
  var input = form.querySelector("input[type=file]");

  // Bounded PATCHes: a proxy with a body limit still passes them, and a retry resends little.
  var CHUNK_SIZE = 32 * 1024 * 1024;
  // Statuses a retry cannot fix: not allowed, over quota, gone, bad request.
  var FINAL_STATUSES = [400, 401, 403, 404, 410, 413, 415];

  var items = [];  // {file, upload, sent, total, done, failed, row}

  form.classList.add("enhanced");
  showUnfinished();

  function showUnfinished() {
    tus.defaultOptions.urlStorage.findAllUploads().then(function (stored) {
      var names = stored.map(function (s) { return (s.metadata && s.metadata.filename) || "?"; });
      if (!names.length) return;
      pending.hidden = false;
      pending.textContent = "Unfinished uploads: " + names.join(", ") +
        ". Add the same files again to continue where they stopped.";
    }).catch(function () { /* no localStorage: nothing to show */ });
  }

  function human(bytes) {
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i++; }
    return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
  }

  function makeRow(file) {
    var li = document.createElement("li");
    var name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = file.size || 1;
    bar.value = 0;
    var status = document.createElement("span");
    status.className = "status";
    status.textContent = "waiting";
    li.append(name, bar, status);
    list.appendChild(li);
    return {li: li, bar: bar, status: status};
  }

  function updateOverall() {
    var sent = 0, total = 0, active = 0, failed = 0;
    items.forEach(function (item) {
      sent += item.sent;
      total += item.total;
      if (!item.done && !item.failed) active++;
      if (item.failed) failed++;
    });
    overallBar.hidden = false;
    overallBar.max = total || 1;
    overallBar.value = sent;
    overallText.textContent = human(sent) + " of " + human(total) +
      (active ? " · " + active + " uploading" : "") + (failed ? " · " + failed + " failed" : "");
    if (items.length && !active && !failed) {
      // The new items reach the grid over the events websocket (live.js): no reload.
      overallText.textContent += " · done";
    }
  }

  function statusOf(error) {
    return error && error.originalResponse ? error.originalResponse.getStatus() : 0;
  }

  function messageOf(error) {
    var response = error && error.originalResponse;
    if (response) {
      try {
        var body = JSON.parse(response.getBody());
        if (body && body.detail) return body.detail;
      } catch (e) { /* not JSON */ }
    }
    return (error && error.message) || "failed";
  }

  function start(file) {
    var item = {file: file, sent: 0, total: file.size, done: false, failed: false, row: makeRow(file)};
    items.push(item);
    item.upload = new tus.Upload(file, {
      endpoint: endpoint,
      chunkSize: CHUNK_SIZE,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000, 60000],
      // lastModified: the file's own date, the timeline's fallback when it has no EXIF date.
      metadata: {filename: file.name, filetype: file.type || "application/octet-stream",
                 lastModified: String(file.lastModified || "")},
      headers: {"X-CSRFToken": csrfToken},
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onShouldRetry: function (error) {
        return FINAL_STATUSES.indexOf(statusOf(error)) === -1;
      },
      onProgress: function (sent, total) {
        item.sent = sent;
        item.total = total;
        item.row.bar.max = total || 1;
        item.row.bar.value = sent;
        item.row.status.textContent = Math.floor((sent / (total || 1)) * 100) + "%";
        updateOverall();
      },
      onSuccess: function () {
        item.done = true;
        item.failed = false;
        item.sent = item.total;
        item.row.bar.value = item.row.bar.max;
        item.row.status.textContent = "done";
        item.row.li.className = "done";
        updateOverall();
      },
      onError: function (error) {
        item.error = error;
        item.failed = true;
        item.row.li.className = "failed";
        item.row.status.textContent = messageOf(error);
        updateOverall();
      },
    });
    item.upload.findPreviousUploads().then(function (previous) {
      if (previous.length) {
        item.upload.resumeFromPreviousUpload(previous[0]);
        item.row.status.textContent = "resuming";
      }
      item.upload.start();
    });
  }

  function startAll(files) {
    Array.prototype.forEach.call(files, start);
    updateOverall();
  }

  // Back online: uploads that gave up on the network try again (resuming, not restarting).
  window.addEventListener("online", function () {
    items.forEach(function (item) {
      if (item.failed && FINAL_STATUSES.indexOf(statusOf(item.error)) === -1) {
        item.failed = false;
        item.row.li.className = "";
        item.row.status.textContent = "resuming";
        item.upload.start();
      }
    });
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    startAll(input.files);
    form.reset();
  });
  input.addEventListener("change", function () {
    startAll(input.files);
    form.reset();
  });
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
    });
  });
  zone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files.length) startAll(event.dataTransfer.files);
  });
})();
