// The annotation page's behaviour that Gradio's components do not have: listening measured
// from the players, keyboard shortcuts, drafts that survive a reload or a dropped connection.
//
// The Python side renders the task (annotation_ui/render.py) with a hidden #rl-task-meta
// element; the timeline component calls rewardlab.taskShown() whenever a task is displayed.
// Every change (a level, a rubric score, a keystroke in the rationale, more of a clip played)
// is mirrored at once to localStorage and, a second later, saved on the server by clicking the
// hidden #rl-autosave button, whose event collects the form through rewardlab.draftArgs().
// A local draft the server never acknowledged wins over the server's copy on the next load.
(() => {
  const rl = (window.rewardlab = window.rewardlab || {});
  const AUTOSAVE_DELAY_MS = 1000;
  const KEY_CHORD_MS = 700; // scales with more than 9 levels take two digits
  let task = null; // the task meta of the task on screen
  let listened = {}; // media path -> largest share played
  let saveTimer = null;
  let savingSnapshot = null;
  let submittingId = null;
  let digits = "";
  let digitTimer = null;

  const storageKey = (judgmentId) => `rewardlab:draft:${judgmentId}`;
  const $ = (selector) => document.querySelector(selector);
  const rationaleBox = () => $("#rl-rationale textarea");

  function levelInputs() {
    return Array.from(document.querySelectorAll("#rl-level input[type=radio]"));
  }

  function chosenLevel() {
    const checked = levelInputs().find((input) => input.checked);
    return checked ? Number(checked.value) : null;
  }

  function rubricScores() {
    const scores = {};
    document.querySelectorAll("#rl-rubric input[type=radio]:checked").forEach((input) => {
      if (input.value === "") return; // "-": left unscored
      const key = input.dataset.response;
      scores[key] = scores[key] || {};
      scores[key][input.dataset.criterion] = Number(input.value);
    });
    return scores;
  }

  function currentDraft() {
    const box = rationaleBox();
    return {
      level: chosenLevel(),
      rubric_scores: rubricScores(),
      rationale: box ? box.value : "",
      listened: { ...listened },
    };
  }

  // ---- drafts: localStorage at once, the server a moment later -------------------------

  function readLocal(judgmentId) {
    try {
      return JSON.parse(localStorage.getItem(storageKey(judgmentId)) || "null");
    } catch (error) {
      return null;
    }
  }

  function writeLocal(draft, synced) {
    if (!task) return;
    const entry = { taskId: task.taskId, draft, synced, at: Date.now() };
    try {
      localStorage.setItem(storageKey(task.judgmentId), JSON.stringify(entry));
    } catch (error) {
      // storage full or disabled: the server copy still saves
    }
  }

  function changed() {
    if (!task) return;
    writeLocal(currentDraft(), false);
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => {
      const button = $("#rl-autosave");
      if (button) button.click();
    }, AUTOSAVE_DELAY_MS);
  }

  // js= of the autosave event: its inputs are (task_id, draft_json); returns them filled in.
  rl.draftArgs = (taskId) => {
    const draft = currentDraft();
    savingSnapshot = { judgmentId: task && task.judgmentId, json: JSON.stringify(draft) };
    return [taskId, savingSnapshot.json];
  };

  // after the server stored the draft: the local copy is synced unless typing went on since
  rl.draftSaved = () => {
    if (!task || !savingSnapshot || savingSnapshot.judgmentId !== task.judgmentId) return;
    const local = readLocal(task.judgmentId);
    if (local && JSON.stringify(local.draft) === savingSnapshot.json) {
      writeLocal(local.draft, true);
    }
  };

  // js= of the submit event: (task_id, judgment_id, level, rubric_json, rationale, listened_json)
  rl.submitArgs = (taskId, judgmentId, level, rubricJson, rationale) => {
    submittingId = judgmentId;
    const draft = currentDraft();
    return [taskId, judgmentId, level, JSON.stringify(draft.rubric_scores), rationale,
      JSON.stringify(draft.listened)];
  };

  rl.submitted = () => {
    if (submittingId) localStorage.removeItem(storageKey(submittingId));
    submittingId = null;
  };

  function applyDraft(draft) {
    if (draft.level !== null && draft.level !== undefined) {
      const input = levelInputs().find((i) => Number(i.value) === draft.level);
      if (input && !input.checked) input.click();
    }
    Object.entries(draft.rubric_scores || {}).forEach(([key, scores]) => {
      Object.entries(scores).forEach(([criterion, score]) => {
        const input = Array.from(document.querySelectorAll("#rl-rubric input[type=radio]")).find(
          (i) => i.dataset.response === key && i.dataset.criterion === criterion &&
            i.value === String(score));
        if (input) input.checked = true;
      });
    });
    const box = rationaleBox();
    if (box && typeof draft.rationale === "string" && box.value !== draft.rationale) {
      box.value = draft.rationale;
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
    Object.entries(draft.listened || {}).forEach(([path, share]) => {
      listened[path] = Math.max(listened[path] || 0, share);
    });
  }

  // ---- listening: the union of the ranges each player has played ------------------------

  function playedShare(audio) {
    const duration = audio.duration;
    if (!Number.isFinite(duration) || duration <= 0) return 0;
    let seconds = 0;
    for (let i = 0; i < audio.played.length; i++) {
      seconds += audio.played.end(i) - audio.played.start(i);
    }
    return Math.min(1, Math.round((seconds / duration) * 1000) / 1000);
  }

  function showListening() {
    document.querySelectorAll("[data-clip-badge]").forEach((badge) => {
      const share = listened[badge.dataset.clipBadge] || 0;
      badge.textContent =
        share >= 0.98 ? "played to the end" : share > 0 ? `${Math.round(share * 100)}% played` : "not played";
      badge.classList.toggle("rl-done", share >= 0.98);
    });
  }

  function onMedia(event) {
    const audio = event.target;
    if (!(audio instanceof HTMLMediaElement) || !audio.dataset.clip || !task) return;
    const share = playedShare(audio);
    if (share > (listened[audio.dataset.clip] || 0)) {
      listened[audio.dataset.clip] = share;
      showListening();
      if (event.type !== "timeupdate") changed(); // save at pauses and ends, not every tick
      else writeLocal(currentDraft(), false);
    }
  }
  ["timeupdate", "pause", "ended", "seeked"].forEach((type) =>
    document.addEventListener(type, onMedia, true));

  // ---- a task is on screen --------------------------------------------------------------

  rl.taskShown = () => {
    const element = $("#rl-task-meta");
    const meta = element ? JSON.parse(element.dataset.meta) : null;
    if (!meta) {
      task = null;
      return;
    }
    if (task && task.judgmentId === meta.judgmentId) return;
    task = meta;
    listened = { ...(meta.listened || {}) };
    // the other components of the same update may land a moment after the timeline
    setTimeout(() => {
      const local = readLocal(meta.judgmentId);
      if (local && !local.synced && task && task.judgmentId === meta.judgmentId) {
        applyDraft(local.draft);
        changed();
      }
      showListening();
    }, 300);
  };

  document.addEventListener("input", (event) => {
    if (event.isTrusted && event.target.closest && event.target.closest("#rl-rationale")) changed();
  }, true);
  document.addEventListener("change", (event) => {
    if (event.target.closest && event.target.closest("#rl-level, #rl-rubric")) changed();
  }, true);

  // ---- keyboard -------------------------------------------------------------------------

  function chooseLevel(key) {
    const inputs = levelInputs();
    if (key >= 1 && key <= inputs.length && !inputs[key - 1].checked) inputs[key - 1].click();
  }

  function onDigit(digit) {
    const levels = levelInputs().length;
    clearTimeout(digitTimer);
    digits += digit;
    if (levels <= 9 || Number(digits) * 10 > levels) {
      chooseLevel(Number(digits));
      digits = "";
      return;
    }
    digitTimer = setTimeout(() => {
      chooseLevel(Number(digits));
      digits = "";
    }, KEY_CHORD_MS);
  }

  document.addEventListener("keydown", (event) => {
    if (!task) return;
    const target = event.target;
    const typing = target && (target.tagName === "TEXTAREA" ||
      (target.tagName === "INPUT" && !["radio", "checkbox"].includes(target.type)));
    if (event.key === "Enter") {
      if ((typing && !(event.ctrlKey || event.metaKey)) || target.tagName === "BUTTON") return;
      event.preventDefault();
      if (!event.repeat) $("#rl-submit").click();
      return;
    }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (/^[0-9]$/.test(event.key)) {
      event.preventDefault();
      onDigit(event.key);
    }
  });
})();
