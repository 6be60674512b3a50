# The dashboard in a container (also what Hugging Face Spaces' Docker SDK runs).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home app
WORKDIR /home/app/sensitivity
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY --chown=app:app . .
USER app

# The operator's budget per request, in forward-pass pixels (sensitivity/engine/budget.py; README,
# "What the app protects against"): 16 M lets every method's page defaults through on one
# photo at 160 px and on six at 64 px, and all but RISE (25 M) on one photo at 224 px: at
# most 107 s at the rate measured on a loaded 2-core machine. It refuses integrated gradients
# with 256 steps at 224 px (45 M for one photo, 270 M for six: over ten minutes), naming
# settings that fit.
ENV SENSITIVITY_MAX_WORK=16000000

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD curl --fail http://localhost:8501/_stcore/health || exit 1
CMD ["python", "-m", "sensitivity", "serve", "--server.port=8501", "--server.address=0.0.0.0"]
