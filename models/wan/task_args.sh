# The task: overrides shared by the Wan launch scripts (source it): TASK_ARGS from MODE (features |
# online), FEATURES (an extraction folder) and ENCODERS_DIR (a Wan *-Diffusers folder: vae/,
# text_encoder/, tokenizer/, and Wan2.1 I2V's image_encoder/ and image_processor/, used when there).
MODE=${MODE:-features}
case "$MODE" in
  features)
    TASK_ARGS=()
    if [ -n "${FEATURES:-}" ]; then TASK_ARGS=(--task.features "$FEATURES"); fi ;;
  online)
    ENCODERS_DIR=${ENCODERS_DIR:?MODE=online: set ENCODERS_DIR to the Wan *-Diffusers folder (vae, text_encoder, tokenizer)}
    TASK_ARGS=(--task.features null --task.vae "$ENCODERS_DIR/vae" --task.text_encoder "$ENCODERS_DIR/text_encoder"
               --task.tokenizer "$ENCODERS_DIR/tokenizer")
    if [ -d "$ENCODERS_DIR/image_encoder" ]; then  # only Wan2.1 I2V's repos ship CLIP
      TASK_ARGS+=(--task.image_encoder "$ENCODERS_DIR/image_encoder"
                  --task.image_processor "$ENCODERS_DIR/image_processor")
    fi ;;
  *) echo "MODE must be features or online, got '$MODE'" >&2; exit 2 ;;
esac
