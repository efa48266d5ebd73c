// The Specks page: one more client of the API. It sends POST /predict with base64 JSON, exactly
// as the Python client in the README does, and draws what comes back. Vanilla JavaScript, no
// build step; every request goes to the server that served the page (relative URLs).
(function () {
  "use strict";

  // DetectOptions' defaults (schemas.py), used until GET /model says the server's own.
  const SCHEMA_DEFAULTS = {
    conf: 0.25, slice: "auto", tile: null, overlap: null, classes: null, region_anchor: "bottom_center",
  };
  const KEY_STORAGE = "specks.apiKey";
  const MODEL_RETRY_MS = 2000;
  const WIDE_SCREEN = "(min-width: 600px)";
  const TAG_BELOW_RATIO = 0.04; // a box this close to the top edge gets its label underneath
  const TAG_LEFT_RATIO = 0.9; // a box starting this far right ends its label at its right edge
  // Drawing regions: points are fractions of the displayed image, rounded as they are sent.
  const FRACTION_DIGITS = 4;
  const CLOSE_RADIUS_PX = 12; // a click this near the first corner closes the polygon
  const SAME_POINT_PX = 4; // a click this near the last corner adds nothing (the 2nd click of a double-click)
  const KEY_STEP_FRACTION = 0.01; // an arrow key moves the cross this much (Shift: 5 times)
  const CORNER_RADIUS_PX = 4;
  const HATCH_PERIOD_PX = 12; // the exclude hatching's stripes, in screen pixels
  const CLICK_AFTER_CLOSE_MS = 500; // the second click of a double-click that closed a region does not zoom
  // Distinct, saturated colours; a class keeps its colour (class_id modulo the list).
  const PALETTE = [
    "#ff3b30", "#34c759", "#0a84ff", "#ffcc00", "#ff2dd4", "#00e5ff", "#ff9500", "#a2ff00",
    "#bf5af2", "#00ffa3", "#ff6f91", "#5ac8fa", "#ffd60a", "#30d158", "#ff453a", "#64d2ff",
    "#e4ff1a", "#ff7aff", "#7ae7ff", "#ffb340",
  ];

  const el = (id) => document.getElementById(id);
  const controls = {
    conf: el("conf"),
    slice: el("slice"),
    tile: el("tile"),
    overlap: el("overlap"),
    classes: el("classes"),
    model: el("model"),
    regionAnchor: el("region-anchor"),
  };

  const state = {
    defaults: Object.assign({}, SCHEMA_DEFAULTS),
    image: null, // { name, type, bytes, base64 }
    objectUrl: null,
    runId: 0,
    controller: null,
    lastAnswer: null,
    defaultsShown: false, // the controls show the server's defaults (from GET /model)
    zoom: 1,
    regions: [], // drawn polygons: { points: [[x, y], ...] in fractions of the displayed image, exclude }
    draft: null, // the polygon being drawn: { points, exclude, cursor: [x, y] or null }
    closedAt: -Infinity, // performance.now() when the last region was closed
  };

  // -- talking to the server ----------------------------------------------------------------

  function apiKey() {
    return el("api-key").value.trim();
  }

  function headers(extra) {
    const result = Object.assign({ Accept: "application/json" }, extra || {});
    if (apiKey()) result["X-API-Key"] = apiKey();
    return result;
  }

  // fetch + JSON body (or null when the body is not JSON); never throws on an HTTP status.
  async function call(path, init) {
    const response = await fetch(path, Object.assign({ headers: headers() }, init || {}));
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, ok: response.ok, body: body };
  }

  async function loadServerInfo() {
    let answer;
    try {
      answer = await call("model");
    } catch (err) {
      el("server-model").textContent = "The server cannot be reached: " + err.message;
      return;
    }
    if (answer.status === 401) {
      el("server-model").textContent = "This server needs an API key: enter it under Options.";
      return;
    }
    if (!answer.ok || !answer.body) {
      const message = errorMessage(answer) || "the model is not ready";
      el("server-model").textContent = "Model: " + message + " (asking again shortly)";
      setTimeout(loadServerInfo, MODEL_RETRY_MS);
      return;
    }
    showModel(answer.body);
    await loadModelList(answer.body.name);
  }

  function showModel(info) {
    const size = info.input_size ? info.input_size.width + "×" + info.input_size.height : "?";
    const classes = Array.isArray(info.names) ? info.names.length : "?";
    el("server-model").textContent = "Model " + info.name + " · input " + size + " · " + classes + " classes";
    const list = el("class-names");
    list.replaceChildren();
    (info.names || []).forEach((name) => {
      const option = document.createElement("option");
      option.value = name;
      list.appendChild(option);
    });
    if (state.defaultsShown) return; // asked again (a new key): keep what the user set
    if (info.defaults && typeof info.defaults === "object") {
      state.defaults = Object.assign({}, SCHEMA_DEFAULTS, info.defaults);
    }
    applyDefaults();
    state.defaultsShown = true;
  }

  // GET /models lists the models when the server has several; otherwise the selector stays hidden.
  async function loadModelList(currentName) {
    let answer;
    try {
      answer = await call("models");
    } catch (_) {
      return;
    }
    const models = answer.ok && answer.body && Array.isArray(answer.body.models) ? answer.body.models : [];
    const field = el("model-field");
    if (models.length < 2) {
      field.hidden = true;
      return;
    }
    const select = controls.model;
    select.replaceChildren();
    models.forEach((entry) => {
      const option = document.createElement("option");
      option.value = entry.name;
      option.textContent = entry.name;
      select.appendChild(option);
    });
    const preferred = models.find((m) => m.default === true) || models.find((m) => m.name === currentName);
    select.value = preferred ? preferred.name : models[0].name;
    select.dataset.initial = select.value;
    field.hidden = false;
  }

  // -- options: start at the server's defaults, send only what the user changed --------------

  function applyDefaults() {
    const d = state.defaults;
    setInitial(controls.conf, d.conf === null || d.conf === undefined ? SCHEMA_DEFAULTS.conf : d.conf);
    setInitial(controls.slice, sliceChoice(d.slice));
    setInitial(controls.tile, d.tile === null || d.tile === undefined ? "" : d.tile);
    setInitial(controls.overlap, d.overlap === null || d.overlap === undefined ? "" : d.overlap);
    setInitial(controls.classes, Array.isArray(d.classes) ? d.classes.join(", ") : "");
    setInitial(controls.regionAnchor, d.region_anchor === "center" ? "center" : "bottom_center");
    showConf();
  }

  // The select's value for a slice default: the API's true/false/"auto", or a server mode name.
  function sliceChoice(value) {
    if (value === true || value === "on") return "true";
    if (value === false || value === "off") return "false";
    return "auto"; // also null or missing: the server decides per image
  }

  function setInitial(control, value) {
    control.value = String(value);
    control.dataset.initial = control.value; // what the control shows for the default
  }

  function changed(control) {
    return control.value !== control.dataset.initial;
  }

  function parseClasses(text) {
    return text
      .split(",")
      .map((part) => part.trim())
      .filter((part) => part.length > 0)
      .map((part) => (/^\d+$/.test(part) ? Number(part) : part));
  }

  // The request options that differ from the server's defaults (an unchanged page sends none).
  function changedOptions() {
    const options = {};
    if (changed(controls.conf)) options.conf = Number(controls.conf.value);
    if (changed(controls.slice)) options.slice = controls.slice.value === "auto" ? "auto" : controls.slice.value === "true";
    if (changed(controls.tile) && controls.tile.value.trim() !== "") options.tile = Number(controls.tile.value);
    if (changed(controls.overlap) && controls.overlap.value.trim() !== "") options.overlap = Number(controls.overlap.value);
    if (changed(controls.classes)) {
      const classes = parseClasses(controls.classes.value);
      if (classes.length > 0) options.classes = classes;
    }
    if (!el("model-field").hidden && changed(controls.model)) options.model = controls.model.value;
    if (state.regions.length > 0) options.regions = state.regions.map(regionOption);
    if (changed(controls.regionAnchor)) options.region_anchor = controls.regionAnchor.value;
    return options;
  }

  function showConf() {
    el("conf-value").textContent = Number(controls.conf.value).toFixed(2);
  }

  // -- the image ------------------------------------------------------------------------------

  function readBase64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const url = String(reader.result);
        resolve(url.slice(url.indexOf(",") + 1)); // drop the data:...;base64, prefix
      };
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  async function useFile(file) {
    if (!file) return;
    state.image = { name: file.name || "pasted-image", type: file.type, bytes: file.size, base64: await readBase64(file) };
    if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
    state.objectUrl = URL.createObjectURL(file);
    const photo = el("photo");
    photo.src = state.objectUrl;
    el("overlay").replaceChildren();
    el("viewer").hidden = false;
    stopDrawing(); // the regions stay: the next photo of the same camera needs the same ones
    setZoom(1);
    await predict();
  }

  // -- the request ------------------------------------------------------------------------------

  async function predict() {
    if (!state.image) return;
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    const runId = ++state.runId;
    const options = changedOptions();
    const payload = Object.assign({ image: state.image.base64 }, options);
    setStatus("Detecting…", true);
    hideError();
    renderSnippets(options);
    let answer;
    try {
      answer = await call("predict", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(payload),
        signal: controller.signal,
      });
    } catch (err) {
      if (err.name === "AbortError") return;
      setStatus("The request failed.", false);
      showError("The server could not be reached", err.message);
      return;
    }
    if (runId !== state.runId) return; // a newer request is on its way
    state.controller = null;
    if (!answer.ok) {
      showFailure(answer);
      return;
    }
    render(answer.body);
  }

  function errorMessage(answer) {
    const error = answer.body && answer.body.error;
    return error && typeof error.message === "string" ? error.message : null;
  }

  function showFailure(answer) {
    const error = (answer.body && answer.body.error) || {};
    const message = errorMessage(answer) || "the server answered " + answer.status + " without a message";
    const code = error.code ? " (" + error.code + ")" : "";
    let title = "The server refused the request: " + answer.status + code;
    if (answer.status === 401) title = "401: this server needs a valid API key. Enter it under Options.";
    if (answer.status === 503) title = "503: the server is busy or still loading its model" + code;
    setStatus("No detections: see the message below.", false);
    showError(title, message);
    clearResult();
  }

  function clearResult() {
    state.lastAnswer = null;
    el("overlay").replaceChildren();
    el("details").hidden = true;
  }

  // -- drawing the answer -------------------------------------------------------------------

  function colourFor(classId) {
    const colour = PALETTE[((classId % PALETTE.length) + PALETTE.length) % PALETTE.length];
    const r = parseInt(colour.slice(1, 3), 16);
    const g = parseInt(colour.slice(3, 5), 16);
    const b = parseInt(colour.slice(5, 7), 16);
    const luminance = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
    return { fill: colour, text: luminance > 0.55 ? "#000" : "#fff" };
  }

  function render(answer) {
    state.lastAnswer = answer;
    const detections = answer.detections || [];
    const image = answer.image || { width: 1, height: 1 };
    el("stage").style.setProperty("--aspect", String(image.width / image.height));
    renderBoxes(detections, image);
    renderTable(detections);
    renderTiming(answer);
    el("raw-json").textContent = JSON.stringify(answer, null, 2);
    const total = answer.timing_ms && typeof answer.timing_ms.total === "number" ? answer.timing_ms.total : null;
    const noun = detections.length === 1 ? "detection" : "detections";
    setStatus(detections.length + " " + noun + (total === null ? "" : " in " + total.toFixed(1) + " ms") + ".", false);
    el("image-info").textContent =
      state.image.name + " · " + image.width + " × " + image.height + " px · " + formatBytes(state.image.bytes);
    el("details").hidden = false;
  }

  function percent(value, whole) {
    return (100 * value) / whole + "%";
  }

  function renderBoxes(detections, image) {
    const overlay = el("overlay");
    overlay.replaceChildren();
    overlay.classList.remove("has-active");
    // Lowest confidence first, so the most confident box is on top where boxes overlap.
    for (let index = detections.length - 1; index >= 0; index--) {
      const d = detections[index];
      const colour = colourFor(d.class_id);
      const box = document.createElement("div");
      box.className = "box";
      box.dataset.index = String(index);
      box.style.left = percent(d.box.x1, image.width);
      box.style.top = percent(d.box.y1, image.height);
      box.style.width = percent(d.box.x2 - d.box.x1, image.width);
      box.style.height = percent(d.box.y2 - d.box.y1, image.height);
      box.style.setProperty("--c", colour.fill);
      box.style.setProperty("--c-text", colour.text);
      if (d.box.y1 / image.height < TAG_BELOW_RATIO) box.classList.add("tag-below");
      if (d.box.x1 / image.width > TAG_LEFT_RATIO) box.classList.add("tag-left");
      box.title = d.label + " " + d.confidence.toFixed(2);
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = d.label + " " + d.confidence.toFixed(2);
      box.appendChild(tag);
      box.addEventListener("mouseenter", () => highlight(index, true));
      box.addEventListener("mouseleave", () => highlight(null, false));
      overlay.appendChild(box);
    }
  }

  function renderTable(detections) {
    const body = el("detections").tBodies[0];
    body.replaceChildren();
    if (detections.length === 0) {
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.colSpan = 4;
      cell.className = "empty";
      cell.textContent = "Nothing found at these settings. Try a lower confidence or small-object mode on.";
      return;
    }
    detections.forEach((d, index) => {
      const row = body.insertRow();
      row.className = "detection";
      row.tabIndex = 0;
      row.dataset.index = String(index);
      row.dataset.label = d.label;
      row.dataset.confidence = String(d.confidence);
      row.insertCell().textContent = String(index + 1);
      const label = row.insertCell();
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.setProperty("--c", colourFor(d.class_id).fill);
      label.append(swatch, d.label);
      row.insertCell().textContent = d.confidence.toFixed(3);
      const cell = row.insertCell();
      cell.className = "box-px";
      cell.textContent =
        // No-break spaces keep each corner on one line when a narrow screen wraps the cell.
        fmt(d.box.x1) + ",\u00a0" + fmt(d.box.y1) + " – " + fmt(d.box.x2) + ",\u00a0" + fmt(d.box.y2);
      row.addEventListener("mouseenter", () => highlight(index, false));
      row.addEventListener("mouseleave", () => highlight(null, false));
      row.addEventListener("focus", () => highlight(index, false));
      row.addEventListener("blur", () => highlight(null, false));
    });
  }

  function fmt(value) {
    return value.toFixed(1);
  }

  // Highlight detection `index` (null: none) in the overlay and the table.
  function highlight(index, fromBox) {
    const overlay = el("overlay");
    overlay.classList.toggle("has-active", index !== null);
    overlay.querySelectorAll(".box").forEach((box) => {
      box.classList.toggle("active", index !== null && box.dataset.index === String(index));
    });
    el("detections").querySelectorAll("tbody tr.detection").forEach((row) => {
      const active = index !== null && row.dataset.index === String(index);
      row.classList.toggle("active", active);
      if (active && fromBox) row.scrollIntoView({ block: "nearest" });
    });
  }

  function renderTiming(answer) {
    const list = el("timing");
    list.replaceChildren();
    const timing = answer.timing_ms || {};
    Object.keys(timing).forEach((stage) => {
      if (stage === "tiles") return; // a count, not milliseconds (it moves to the top level)
      addTerm(list, stage, Number(timing[stage]).toFixed(1) + " ms");
    });
    const tiles = typeof answer.tiles === "number" ? answer.tiles : timing.tiles;
    if (typeof tiles === "number") addTerm(list, "tiles", tiles === 0 ? "0 (not sliced)" : String(tiles));
  }

  function addTerm(list, term, value) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }

  function formatBytes(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(0) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  // -- the same request as curl and as the README's Python client ----------------------------

  function shellQuote(text) {
    return "'" + String(text).replace(/'/g, "'\\''") + "'";
  }

  function pythonLiteral(value) {
    if (value === null) return "None";
    if (value === true) return "True";
    if (value === false) return "False";
    if (Array.isArray(value)) return "[" + value.map(pythonLiteral).join(", ") + "]";
    if (typeof value === "object") {
      const items = Object.keys(value).map((key) => JSON.stringify(key) + ": " + pythonLiteral(value[key]));
      return "{" + items.join(", ") + "}";
    }
    return JSON.stringify(value); // numbers, and strings (a JSON string is a Python string)
  }

  function renderSnippets(options) {
    const url = new URL("predict", window.location.href).href;
    const name = state.image ? state.image.name : "image.jpg";
    const rest = Object.keys(options)
      .map((key) => JSON.stringify(key) + ": " + JSON.stringify(options[key]))
      .join(", ");
    const keyHeader = apiKey() ? "  -H \"X-API-Key: $SPECKS_API_KEY\" \\\n" : "";
    el("curl").textContent =
      (apiKey() ? "# export SPECKS_API_KEY=<your key> first\n" : "") +
      "(printf '%s' '{\"image\": \"'; base64 < " + shellQuote(name) + " | tr -d '\\n'\n" +
      " printf '%s' " + shellQuote("\"" + (rest ? ", " + rest : "") + "}") + ") |\n" +
      "curl -s -X POST " + shellQuote(url) + " \\\n" +
      "  -H 'Content-Type: application/json' \\\n" +
      keyHeader +
      "  --data-binary @-";
    const pyOptions = Object.keys(options)
      .map((key) => ", " + JSON.stringify(key) + ": " + pythonLiteral(options[key]))
      .join("");
    const pyHeaders = apiKey()
      ? '{"Content-type": "application/json", "X-API-Key": os.environ["SPECKS_API_KEY"]}'
      : '{"Content-type": "application/json"}';
    el("python").textContent =
      "import base64, json" + (apiKey() ? ", os" : "") + ", requests\n\n" +
      "with open(" + JSON.stringify(name) + ", \"rb\") as f:\n" +
      "    payload = {\"image\": base64.b64encode(f.read()).decode(\"utf-8\")" + pyOptions + "}\n" +
      "response = requests.post(" + JSON.stringify(url) + ", data=json.dumps(payload),\n" +
      "                         headers=" + pyHeaders + ")\n" +
      "print(response.json()[\"detections\"])";
  }

  // -- regions: polygons drawn on the image ---------------------------------------------------
  // Points are kept and sent as fractions of the displayed image ("units": "fraction"), so they
  // do not depend on the size it is shown at, its zoom or its EXIF orientation.

  function regionOption(region) {
    const option = { points: region.points, units: "fraction" };
    if (region.exclude) option.exclude = true; // include is the API's default
    return option;
  }

  function excludeChosen() {
    return el("region-exclude").checked;
  }

  function roundFraction(value) {
    const factor = Math.pow(10, FRACTION_DIGITS);
    return Math.round(Math.min(1, Math.max(0, value)) * factor) / factor;
  }

  // The pointer's position as [x, y] fractions of the displayed image.
  function pointOf(event) {
    const rect = el("photo").getBoundingClientRect();
    const x = (event.clientX - rect.left) / rect.width;
    const y = (event.clientY - rect.top) / rect.height;
    return [roundFraction(x), roundFraction(y)];
  }

  // Distance in screen pixels between two points given in fractions.
  function distancePx(a, b) {
    const rect = el("photo").getBoundingClientRect();
    return Math.hypot((a[0] - b[0]) * rect.width, (a[1] - b[1]) * rect.height);
  }

  // Start a polygon; from the keyboard, with the cross in the middle of the image.
  function startDrawing(fromKeyboard) {
    const stage = el("stage");
    state.draft = { points: [], exclude: excludeChosen(), cursor: fromKeyboard ? [0.5, 0.5] : null };
    stage.classList.add("drawing");
    stage.tabIndex = 0;
    stage.setAttribute("role", "application");
    stage.setAttribute(
      "aria-label",
      "Image: the arrow keys move the cross, Space adds a corner, Backspace removes the last one, " +
        "Enter closes the region, Escape cancels"
    );
    stage.focus({ preventScroll: true });
    showRegions();
  }

  function stopDrawing() {
    const stage = el("stage");
    const hadFocus = document.activeElement === stage;
    state.draft = null;
    stage.classList.remove("drawing");
    stage.removeAttribute("tabindex");
    stage.removeAttribute("role");
    stage.removeAttribute("aria-label");
    if (hadFocus) el("region-draw").focus();
    showRegions();
  }

  // Add a corner; a click on the first corner closes the polygon, one on the last adds nothing.
  function addCorner(point) {
    const points = state.draft.points;
    if (points.length >= 3 && distancePx(point, points[0]) <= CLOSE_RADIUS_PX) {
      closeRegion();
      return;
    }
    if (points.length > 0 && distancePx(point, points[points.length - 1]) <= SAME_POINT_PX) return;
    points.push(point);
    showRegions();
  }

  // Close the polygon being drawn and run the request; with fewer than 3 corners it stays open.
  function closeRegion() {
    const draft = state.draft;
    if (!draft || draft.points.length < 3) return;
    state.regions.push({ points: draft.points, exclude: draft.exclude });
    state.closedAt = performance.now();
    stopDrawing();
    predict();
  }

  // The draw button: start a polygon, close it, or (with fewer than 3 corners) give it up.
  function onDrawButton(event) {
    if (!state.draft) startDrawing(event.detail === 0); // a click from Enter or Space has no pointer
    else if (state.draft.points.length >= 3) closeRegion();
    else stopDrawing();
  }

  function clearRegions() {
    const had = state.regions.length > 0;
    state.regions = [];
    stopDrawing();
    if (had) predict();
  }

  function moveCursor(key, fast) {
    const draft = state.draft;
    const last = draft.points[draft.points.length - 1];
    const cursor = draft.cursor || (last ? last.slice() : [0.5, 0.5]);
    const step = KEY_STEP_FRACTION * (fast ? 5 : 1);
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    draft.cursor = [roundFraction(cursor[0] + moves[key][0]), roundFraction(cursor[1] + moves[key][1])];
    showRegions();
  }

  // Keys while drawing: Escape anywhere; the others only on the image (a focused button keeps its Enter).
  function onDrawingKey(event) {
    if (!state.draft) return;
    if (event.key === "Escape") {
      event.preventDefault();
      stopDrawing();
      return;
    }
    if (event.target !== el("stage")) return;
    if (event.key === "Enter") {
      closeRegion();
    } else if (event.key === " ") {
      addCorner(state.draft.cursor || [0.5, 0.5]);
    } else if (event.key === "Backspace") {
      state.draft.points.pop();
      showRegions();
    } else if (event.key.startsWith("Arrow")) {
      moveCursor(event.key, event.shiftKey);
    } else {
      return;
    }
    event.preventDefault();
  }

  // -- regions: drawing them in the SVG over the image (units: the image's pixels) -------------

  function svgElement(name, className, attributes) {
    const node = document.createElementNS(el("regions").namespaceURI, name);
    node.setAttribute("class", className);
    Object.keys(attributes || {}).forEach((key) => node.setAttribute(key, String(attributes[key])));
    return node;
  }

  function pointsAttribute(points, width, height) {
    return points.map((p) => p[0] * width + "," + p[1] * height).join(" ");
  }

  function regionGroup(region, width, height) {
    const kind = region.exclude ? "exclude" : "include";
    const group = svgElement("g", "region " + kind);
    const points = pointsAttribute(region.points, width, height);
    if (region.exclude) {
      group.append(svgElement("polygon", "region-dim", { points: points }));
      group.append(svgElement("polygon", "region-hatch", { points: points }));
    }
    group.append(svgElement("polygon", "region-halo", { points: points }));
    group.append(svgElement("polygon", "region-line", { points: points }));
    return group;
  }

  // The polygon being drawn: its corners so far, a line on to the cross, and a ring on the cross.
  function draftGroup(draft, width, height, unitsPerPx) {
    const kind = draft.exclude ? "exclude" : "include";
    const group = svgElement("g", "region draft " + kind);
    const line = draft.cursor ? draft.points.concat([draft.cursor]) : draft.points;
    const points = pointsAttribute(line, width, height);
    group.append(svgElement("polyline", "region-halo", { points: points }));
    group.append(svgElement("polyline", "region-line", { points: points }));
    draft.points.forEach((p, index) => {
      const first = index === 0 && draft.points.length >= 3; // click it to close
      const radius = (first ? CLOSE_RADIUS_PX / 2 : CORNER_RADIUS_PX) * unitsPerPx;
      const corner = { cx: p[0] * width, cy: p[1] * height, r: radius };
      group.append(svgElement("circle", "region-corner" + (first ? " first" : ""), corner));
    });
    if (draft.cursor) {
      const [x, y] = draft.cursor;
      const ring = { cx: x * width, cy: y * height, r: 2 * CORNER_RADIUS_PX * unitsPerPx };
      group.append(svgElement("circle", "region-cursor", ring));
    }
    return group;
  }

  // Draw the regions and the draft over the image, and say where things stand.
  function showRegions() {
    const photo = el("photo");
    const width = photo.naturalWidth || 1;
    const height = photo.naturalHeight || 1;
    const shownWidth = photo.getBoundingClientRect().width;
    const unitsPerPx = shownWidth > 0 ? width / shownWidth : 1;
    el("regions").setAttribute("viewBox", "0 0 " + width + " " + height);
    const period = HATCH_PERIOD_PX * unitsPerPx;
    const pattern = el("exclude-hatch");
    pattern.setAttribute("width", String(period));
    pattern.setAttribute("height", String(period));
    el("hatch-line").setAttribute("width", String(period / 6));
    el("hatch-line").setAttribute("height", String(period));
    const shapes = el("region-shapes");
    shapes.replaceChildren();
    state.regions.forEach((region) => shapes.append(regionGroup(region, width, height)));
    if (state.draft) shapes.append(draftGroup(state.draft, width, height, unitsPerPx));
    showRegionState();
  }

  function showRegionState() {
    const draft = state.draft;
    const closable = draft && draft.points.length >= 3;
    el("region-draw").textContent = !draft ? "Draw a region" : closable ? "Close the region" : "Cancel";
    el("region-clear").disabled = state.regions.length === 0 && !draft;
    el("region-summary").textContent = draft ? draftSummary(draft) : regionsSummary();
    el("region-hint").hidden = !draft; // how to draw, while drawing (the group's description meanwhile)
  }

  function draftSummary(draft) {
    const count = draft.points.length;
    const next = count >= 3 ? "close it to run the request" : "at least 3 are needed";
    const corners = count + (count === 1 ? " corner" : " corners");
    return "Drawing an " + (draft.exclude ? "exclude" : "include") + " region: " + corners + "; " + next + ".";
  }

  function regionsSummary() {
    const count = state.regions.length;
    if (count === 0) return ""; // the whole image, as without the feature
    const excluded = state.regions.filter((r) => r.exclude).length;
    const counts = (count === 1 ? "1 region" : count + " regions") + ": " + (count - excluded) + " include, ";
    return counts + excluded + " exclude. Only boxes standing in an include region and in no exclude one are answered.";
  }

  // -- status, errors, copying ----------------------------------------------------------------

  function setStatus(text, busy) {
    const status = el("status");
    status.textContent = text;
    status.classList.toggle("busy", busy);
  }

  function showError(title, message) {
    const box = el("error");
    box.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = title;
    const detail = document.createElement("span");
    detail.className = "error-message";
    detail.textContent = message;
    box.append(strong, detail);
    box.hidden = false;
  }

  function hideError() {
    el("error").hidden = true;
    el("error").replaceChildren();
  }

  async function copyFrom(id, button) {
    const text = el(id).textContent;
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      const range = document.createRange(); // no clipboard API (plain http): select it for Ctrl+C
      range.selectNodeContents(el(id));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
      setTimeout(() => (button.textContent = label), 2000);
      return;
    }
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = label), 1500);
  }

  // -- zoom ---------------------------------------------------------------------------------------

  function setZoom(zoom, focus) {
    const viewport = el("viewport");
    const stage = el("stage");
    const before = stage.getBoundingClientRect();
    state.zoom = zoom;
    stage.style.setProperty("--zoom", String(zoom));
    stage.classList.toggle("zoomed", zoom > 1);
    el("zoom").value = String(zoom);
    showRegions(); // corner markers keep their screen size
    if (focus && before.width > 0) {
      // Keep the clicked point of the image under the pointer.
      const fx = (focus.x - before.left) / before.width;
      const fy = (focus.y - before.top) / before.height;
      const after = stage.getBoundingClientRect();
      const view = viewport.getBoundingClientRect();
      viewport.scrollLeft = fx * after.width - (focus.x - view.left);
      viewport.scrollTop = fy * after.height - (focus.y - view.top);
    }
  }

  // -- wiring -------------------------------------------------------------------------------------

  function firstFile(list) {
    return list && list.length > 0 ? list[0] : null;
  }

  function wireRegions() {
    const stage = el("stage");
    el("region-draw").addEventListener("click", onDrawButton);
    el("region-clear").addEventListener("click", clearRegions);
    document.querySelectorAll("input[name='region-kind']").forEach((radio) =>
      radio.addEventListener("change", () => {
        if (state.draft) state.draft.exclude = excludeChosen(); // the kind is the next polygon's
        showRegions();
      })
    );
    stage.addEventListener("dblclick", () => state.draft && closeRegion());
    stage.addEventListener("pointermove", (event) => {
      if (!state.draft) return;
      state.draft.cursor = pointOf(event);
      showRegions();
    });
    stage.addEventListener("pointerleave", () => {
      if (!state.draft || !state.draft.cursor) return;
      state.draft.cursor = null;
      showRegions();
    });
    document.addEventListener("keydown", onDrawingKey);
    window.addEventListener("resize", showRegions);
  }

  function wire() {
    const keyField = el("api-key");
    keyField.value = sessionStorage.getItem(KEY_STORAGE) || "";
    keyField.addEventListener("change", () => {
      if (apiKey()) sessionStorage.setItem(KEY_STORAGE, apiKey());
      else sessionStorage.removeItem(KEY_STORAGE);
      loadServerInfo().then(predict);
    });

    el("file").addEventListener("change", (event) => useFile(firstFile(event.target.files)));
    el("controls").addEventListener("submit", (event) => event.preventDefault());
    controls.conf.addEventListener("input", showConf);
    Object.values(controls).forEach((control) => control.addEventListener("change", predict));

    const dropzone = el("dropzone");
    document.addEventListener("dragover", (event) => {
      event.preventDefault(); // allow dropping anywhere (the browser would open the file instead)
      dropzone.classList.add("dragging");
    });
    document.addEventListener("dragleave", (event) => {
      if (event.relatedTarget === null) dropzone.classList.remove("dragging");
    });
    document.addEventListener("drop", (event) => {
      event.preventDefault();
      dropzone.classList.remove("dragging");
      useFile(firstFile(event.dataTransfer && event.dataTransfer.files));
    });
    document.addEventListener("paste", (event) => {
      const file = firstFile(event.clipboardData && event.clipboardData.files);
      if (file) {
        event.preventDefault();
        useFile(file);
      }
    });

    el("zoom").addEventListener("change", () => setZoom(Number(el("zoom").value)));
    el("stage").addEventListener("click", (event) => {
      if (state.draft) {
        addCorner(pointOf(event));
        return;
      }
      if (event.detail > 1 && performance.now() - state.closedAt < CLICK_AFTER_CLOSE_MS) return;
      const next = state.zoom > 1 ? 1 : 4;
      setZoom(next, { x: event.clientX, y: event.clientY });
    });
    wireRegions();
    const showTags = el("show-tags");
    showTags.checked = window.matchMedia(WIDE_SCREEN).matches; // labels crowd a phone-width image
    el("overlay").classList.toggle("no-tags", !showTags.checked);
    showTags.addEventListener("change", () => el("overlay").classList.toggle("no-tags", !showTags.checked));
    el("photo").addEventListener("load", (event) => {
      const photo = event.target;
      if (!state.lastAnswer && photo.naturalHeight > 0) {
        el("stage").style.setProperty("--aspect", String(photo.naturalWidth / photo.naturalHeight));
      }
      showRegions(); // now that the image has its size
    });
    el("photo").addEventListener("error", (event) => {
      // Not an image the browser can show; the server's answer says why.
      if (event.target.getAttribute("src")) el("viewer").hidden = true;
    });
    document.querySelectorAll("button.copy").forEach((button) => {
      button.addEventListener("click", () => copyFrom(button.dataset.copy, button));
    });
  }

  wire();
  applyDefaults();
  showRegions();
  loadServerInfo();
})();
