// Posts the login link's token (the URL fragment, which is never sent to a server) and
// removes it from the address bar and history. A link opened while this page is already
// shown changes only the fragment (no reload), so that is watched for too.
(function () {
  function signIn() {
    var token = window.location.hash.slice(1);
    if (!token) { return; }
    window.history.replaceState(null, "", window.location.pathname);
    document.getElementById("token").value = token;
    document.getElementById("login").submit();
  }
  window.addEventListener("hashchange", signIn);
  signIn();
})();
