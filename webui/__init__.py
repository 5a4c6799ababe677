"""The Flask web UI and JSON API. Routes are thin: parse, call one service, render."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from flask import Flask, Request
from werkzeug.datastructures import FileStorage

from appliance.runtime import Appliance
from appliance.services import uploads

from . import auth, context, errors, limits, security
from .api_common import IdConverter
from .blueprints import BLUEPRINTS

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # CSV imports; the nginx front uses the same limit


class UploadRequest(Request):
    """A request whose uploaded files are written into `<data_dir>/tmp` (services.uploads).

    Werkzeug would spool a large multipart upload to the system temp directory while parsing
    the form (which the CSRF check does before any view runs); here every file part goes to a
    private file in the data directory instead (`_get_file_stream` is Werkzeug's hook for
    this). A view that needs the file after the request binds it to the uploader with
    uploads.claim_upload(upload_token(file)); every other file is deleted when the request
    ends."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._upload_files: list[tuple[Path, str, IO[bytes]]] = []

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        data_dir = context.appliance().config.data_dir
        token, fh = uploads.new_upload(data_dir)
        self._upload_files.append((data_dir, token, fh))
        return fh

    def upload_token(self, file: FileStorage) -> str | None:
        """The token of an uploaded file of this request, for uploads.claim_upload."""
        return next((token for _, token, fh in self._upload_files if fh is file.stream), None)

    def close(self) -> None:
        try:
            super().close()
        finally:
            for data_dir, token, fh in self._upload_files:
                fh.close()
                uploads.discard_new_upload(data_dir, token)
            self._upload_files.clear()


def create_app(appliance: Appliance) -> Flask:
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config.update(
        # flask-wtf and Flask sessions sign with this; it is a sub-key of the master key,
        # so it never sits in a config file and changes when the master key is rotated.
        SECRET_KEY=appliance.keys.sessions,
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.json.sort_keys = False  # keep the documented field order
    app.extensions["mailflow"] = appliance
    app.url_map.converters["int"] = IdConverter  # before any route is added
    security.init_app(app, appliance.config)
    errors.init_app(app)
    auth.init_app(app)
    limits.init_app(app)
    app.jinja_env.globals["current_user"] = auth.current
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app
