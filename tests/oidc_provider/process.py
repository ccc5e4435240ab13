"""Start the test provider (tests.oidc_provider) in its own process on a loopback port."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
SECRET = "chipmunk-secret"
PHONE_REDIRECT = "chipmunk://oauth/callback"


class Provider:
    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.issuer = f"{self.base}/o"
        self.db = workdir / "provider.sqlite3"
        self.key_path = workdir / "provider-key.pem"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        self.private_key_pem = self.key_path.read_text()
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
                    "PROVIDER_DB": str(self.db), "PROVIDER_KEY": str(self.key_path)}
        for name in ("DATABASE_URL", "REDIS_URL"):
            self.env.pop(name, None)
        self.allowed: set[str] = set()
        self.process: subprocess.Popen | None = None

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=self.env, check=True,
                       capture_output=True, timeout=120)

    def start(self) -> Provider:
        self.manage("migrate", "--noinput", "-v0")
        self.manage("seed")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{self.port}", "--noreload"], cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise AssertionError("the test OpenID provider did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def allow(self, chipmunk_base: str) -> None:
        """Register Chipmunk at this address as the web clients' redirect and logout target."""
        if chipmunk_base in self.allowed:
            return
        self.manage("seed", "--redirect-uri", f"{chipmunk_base}/oidc/callback/",
                    "--logout-uri", f"{chipmunk_base}/login/")
        self.allowed.add(chipmunk_base)

    def sql(self, statement: str, *params) -> None:
        """Change the provider's own database (expire a code or a token, change a group)."""
        with sqlite3.connect(self.db, timeout=20) as conn:
            conn.execute(statement, params)

    def log_in_at_provider(self, http: requests.Session, response: requests.Response, username: str,
                           *, follow: bool = True) -> requests.Response:
        """Fill the provider's login form that `response` shows (consent is skipped)."""
        assert 'id="provider-login"' in response.text, response.text[:500]
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text).group(1)
        nxt = re.search(r'name="next" value="([^"]*)"', response.text).group(1)
        return http.post(response.url, data={"csrfmiddlewaretoken": csrf, "username": username,
                                             "password": f"{username}-password", "next": nxt.replace("&amp;", "&")},
                         allow_redirects=follow, timeout=30)

    def phone_token(self, username: str, scope: str) -> str:
        """An access token for the public phone client: authorization code with PKCE, as an app does."""
        http = requests.Session()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urllib.parse.urlencode({"response_type": "code", "client_id": "chipmunk-phone",
                                        "redirect_uri": PHONE_REDIRECT, "scope": scope, "state": "s",
                                        "code_challenge": challenge, "code_challenge_method": "S256"})
        login_page = http.get(f"{self.issuer}/authorize/?{query}", timeout=30)
        response = self.log_in_at_provider(http, login_page, username, follow=False)
        while response.status_code in (301, 302, 303) and not response.headers["Location"].startswith("chipmunk:"):
            response = http.get(urllib.parse.urljoin(response.url, response.headers["Location"]), allow_redirects=False,
                                timeout=30)
        location = response.headers.get("Location", "")
        assert location.startswith(PHONE_REDIRECT), (response.status_code, response.text[:500])
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]
        token = http.post(f"{self.issuer}/token/", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": PHONE_REDIRECT,
            "client_id": "chipmunk-phone", "code_verifier": verifier}, timeout=30)
        assert token.status_code == 200, token.text
        return token.json()["access_token"]
