"""/api/v1/jobs: the progress of a background job (bulk checks, imports), for the pages'
progress bars and API clients; each job is visible to whoever may see it (jobs.get)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from appliance.services import jobs

from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_jobs", __name__, url_prefix="/api/v1")


@bp.get("/jobs/<int:job_id>")
@require("viewer")
def job(job_id: int):
    return jsonify(jobs.get(appliance().db, job_id, current()))
