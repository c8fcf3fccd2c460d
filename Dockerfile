# One image for the bot and the workers (compose.yaml). On the GPU workers torch's CUDA wheel is
# used; the bot never imports torch (its model runs on the workers when TEXTUNES_BROKER is set).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
ARG TORCH_SPEC="torch==2.13.0"
RUN pip install --no-cache-dir "$TORCH_SPEC" && pip install --no-cache-dir -e .
CMD ["textunes", "--help"]
