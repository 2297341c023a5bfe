"use strict";
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await fetch("/api/login", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({token: document.getElementById("token").value})});
    if (r.ok) location.reload();
    else document.getElementById("login-status").textContent = "wrong token";
  });
});
