# CPU image of the app: docker build -t cprune . && docker run -p 8501:8501 cprune
# Inside a container the app must listen on 0.0.0.0 to be reachable through the published port: the
# image serves it to whatever network the port is published on (docs/serving.md, "Serving to a network").
FROM python:3.11-slim
WORKDIR /app
# A visitor's link never makes the server download weights or datasets (`docker run -e CPRUNE_DOWNLOADS=on` to allow it).
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 CPRUNE_DOWNLOADS=off
COPY requirements.txt pyproject.toml ./
# The CPU wheel of the pinned torch keeps the image small; requirements.txt pins the same version.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install -r requirements.txt
COPY . .
RUN pip install --no-deps -e .
EXPOSE 8501
HEALTHCHECK CMD python -c "import urllib.request as u; u.urlopen('http://localhost:8501/_stcore/health')"
CMD ["streamlit", "run", "app.py", "--server.port", "8501", "--server.address", "0.0.0.0", "--client.showErrorDetails", "none"]
