"""Pages: sign in, sign out, first-run setup, accepting an invitation, profile and password."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, g, redirect, render_template, request, url_for

from appliance.services import setup as setup_service
from appliance.services import users
from appliance.services.errors import AuthenticationFailed, ServiceError, ValidationError

from ..auth import clear_session_cookie, client_ip, current, require, set_session_cookie
from ..context import appliance
from ..limits import auth_limits
from .api_auth import start_session

bp = Blueprint("ui_auth", __name__)


def safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after sign-in is a phishing tool."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return url_for("pages.index")
    return target


def signed_in_redirect(user: dict, target: str):
    token, claims = start_session(user)
    g.session_replaced = True
    response = redirect(target)
    set_session_cookie(response, token, claims)
    return response


@bp.route("/login", methods=["GET", "POST"])
@auth_limits
def login():
    form, error = {"email": ""}, None
    if request.method == "POST":
        form["email"] = request.form.get("email", "")
        try:
            user = users.authenticate(appliance().db, form["email"], request.form.get("password", ""),
                                      client_ip())
            return signed_in_redirect(user, safe_next(request.args.get("next")))
        except AuthenticationFailed as exc:
            error = exc.message
    status = 401 if error else 200
    return render_template("login.html", form=form, error=error), status


@bp.post("/logout")
@require("viewer")
def logout():
    users.logout(appliance().db, current())
    response = redirect(url_for("ui_auth.login"))
    clear_session_cookie(response)
    return response


@bp.post("/setup/<token>")
@auth_limits
def create_owner(token: str):
    form = {"email": request.form.get("email", ""), "name": request.form.get("name", "")}
    try:
        if request.form.get("password", "") != request.form.get("password_confirm", ""):
            raise ValidationError({"password_confirm": "The two passwords differ."})
        user = users.create_owner_with_setup_token(
            appliance().db, token, email=form["email"], name=form["name"],
            password=request.form.get("password", ""), ip=client_ip(), cost=appliance().config.bcrypt_cost)
    except ValidationError as exc:
        return render_template("setup.html", state="valid", form=form, errors=exc.fields), 400
    except ServiceError as exc:
        state = setup_service.check_setup_token(appliance().db, token).value
        return render_template("setup.html", state=state, form=form, errors={}), exc.status
    return signed_in_redirect(users.user_row(appliance().db, user["id"]), url_for("pages.index"))


@bp.route("/invite/<token>", methods=["GET", "POST"])
@auth_limits
def accept_invite(token: str):
    try:
        invited = users.invite_state(appliance().db, token)
    except ServiceError as exc:
        return render_template("invite.html", invalid=exc.message, form={}, errors={}), exc.status
    form, errors = {"name": invited["name"]}, {}
    if request.method == "POST":
        form["name"] = request.form.get("name", "")
        try:
            if request.form.get("password", "") != request.form.get("password_confirm", ""):
                raise ValidationError({"password_confirm": "The two passwords differ."})
            user = users.accept_invite(appliance().db, token, password=request.form.get("password", ""),
                                       name=form["name"], ip=client_ip(), cost=appliance().config.bcrypt_cost)
            return signed_in_redirect(users.user_row(appliance().db, user["id"]), url_for("pages.index"))
        except ValidationError as exc:
            errors = exc.fields
    return render_template("invite.html", invited=invited, form=form, errors=errors), 400 if errors else 200


@bp.route("/profile", methods=["GET", "POST"])
@require("viewer")
def profile():
    errors, done = {}, request.args.get("done")
    if request.method == "POST":
        try:
            if request.form.get("new_password") != request.form.get("new_password_confirm"):
                raise ValidationError({"new_password_confirm": "The two passwords differ."})
            users.change_password(appliance().db, current(),
                                  current_password=request.form.get("current_password", ""),
                                  new_password=request.form.get("new_password", ""),
                                  cost=appliance().config.bcrypt_cost)
            return signed_in_redirect(users.user_row(appliance().db, current().user_id),
                                      url_for("ui_auth.profile", done="password"))
        except ValidationError as exc:
            errors = exc.fields
    me = users.get(appliance().db, current().user_id)
    return render_template("profile.html", me=me, errors=errors, done=done), 400 if errors else 200


@bp.post("/profile/sign-out-everywhere")
@require("viewer")
def sign_out_everywhere():
    users.sign_out_everywhere(appliance().db, current())
    response = redirect(url_for("ui_auth.login"))
    clear_session_cookie(response)
    return response
