// Light, dark, or the system's choice: applied before the first paint (a classic script
// in <head>; modules run only after the page is parsed) and kept in localStorage.
//
// The page's colours key off <html data-theme="light|dark">, always the resolved theme,
// so CSS has one dark palette and "system" follows the OS when it switches.
(() => {
  const KEY = "taskd.theme";
  const CHOICES = ["system", "light", "dark"];
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  let choice = "system";
  try {
    const stored = localStorage.getItem(KEY);
    if (CHOICES.includes(stored)) choice = stored;
  } catch {
    // Storage disabled: follow the system.
  }

  function apply() {
    const resolved = choice === "system" ? (dark.matches ? "dark" : "light") : choice;
    document.documentElement.dataset.theme = resolved;
    document.documentElement.dataset.themeChoice = choice;
  }

  apply();
  dark.addEventListener("change", apply);
  document.addEventListener("DOMContentLoaded", () => {
    const select = /** @type {HTMLSelectElement|null} */ (document.getElementById("theme"));
    if (!select) return;
    select.value = choice;
    select.addEventListener("change", () => {
      choice = CHOICES.includes(select.value) ? select.value : "system";
      try {
        localStorage.setItem(KEY, choice);
      } catch {
        // Storage disabled: the choice lasts until the page is reloaded.
      }
      apply();
    });
  });
})();
