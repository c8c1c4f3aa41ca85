// Wires sign-in, sign-out and navigation once every page script has registered itself.
"use strict";

document.getElementById("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  const error = document.getElementById("signin-error");
  error.textContent = "";
  const problem = await PH.signIn(input.value.trim());
  input.value = "";
  if (problem) {
    error.textContent = problem;
    input.focus();
    return;
  }
  if (!location.hash) location.hash = "#/overview";
  PH.render();
  document.getElementById("main").focus();
});

document.getElementById("signout").addEventListener("click", () => PH.signOut("Signed out."));
window.addEventListener("hashchange", () => {
  PH.render();
  document.getElementById("main").focus({ preventScroll: true });
});
PH.render();
