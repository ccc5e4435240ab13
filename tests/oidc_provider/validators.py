"""The provider's claims (with `groups`), its JWT access tokens, and the misbehaving clients
the failure-mode tests log in through."""

import base64
import json
import time
import uuid

from jwcrypto import jwk, jwt
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings

# The audience of every access token: Chipmunk's client id (Keycloak: an audience mapper).
API_AUDIENCE = "chipmunk"


class Validator(OAuth2Validator):
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "profile"}

    def get_additional_claims(self, request):
        user = request.user
        return {
            "preferred_username": user.username,
            "email": user.email,
            "email_verified": not user.username.startswith("unverified"),
            "given_name": user.first_name,
            "family_name": user.last_name,
            "name": f"{user.first_name} {user.last_name}".strip(),
            "groups": list(user.groups.order_by("id").values_list("name", flat=True)),
        }

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expires = super().get_id_token_dictionary(token, token_handler, request)
        if request.client_id == "chipmunk-wrong-aud":
            claims["aud"] = "someone-else"
        if request.client_id == "chipmunk-wrong-iss":
            claims["iss"] = "http://evil.example/o"
        return claims, expires

    def finalize_id_token(self, id_token, token, token_handler, request):
        signed = super().finalize_id_token(id_token, token, token_handler, request)
        if request.client_id != "chipmunk-bad-sig":
            return signed
        # Change the claims after signing: the signature no longer matches them.
        header, payload, signature = signed.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["sub"] = "someone-else"
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        return f"{header}.{payload}.{signature}"


def signing_key() -> jwk.JWK:
    return jwk.JWK.from_pem(oauth2_settings.OIDC_RSA_PRIVATE_KEY.encode())


def signed_access_token(request, refresh_token=False):
    """An RFC 9068-style JWT access token signed with the provider's key."""
    key = signing_key()
    now = int(time.time())
    claims = {"iss": oauth2_settings.oidc_issuer(request), "sub": str(request.user.pk), "aud": API_AUDIENCE,
              "azp": request.client_id, "scope": " ".join(request.scopes), "iat": now,
              "exp": now + oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS, "jti": uuid.uuid4().hex}
    token = jwt.JWT(header={"alg": "RS256", "typ": "at+jwt", "kid": key.thumbprint()}, claims=claims)
    token.make_signed_token(key)
    return token.serialize()
