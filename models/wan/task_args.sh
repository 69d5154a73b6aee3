# The task: overrides shared by the Wan launch scripts (source it): TASK_ARGS from MODE (features |
# online), FEATURES (an extraction folder) and ENCODERS_DIR (a Wan *-Diffusers folder: vae/,
# text_encoder/, tokenizer/).
MODE=${MODE:-features}
case "$MODE" in
  features)
    TASK_ARGS=()
    if [ -n "${FEATURES:-}" ]; then TASK_ARGS=(--task.features "$FEATURES"); fi ;;
  online)
    ENCODERS_DIR=${ENCODERS_DIR:?MODE=online: set ENCODERS_DIR to the Wan *-Diffusers folder (vae, text_encoder, tokenizer)}
    TASK_ARGS=(--task.features null --task.vae "$ENCODERS_DIR/vae" --task.text_encoder "$ENCODERS_DIR/text_encoder"
               --task.tokenizer "$ENCODERS_DIR/tokenizer") ;;
  *) echo "MODE must be features or online, got '$MODE'" >&2; exit 2 ;;
esac
