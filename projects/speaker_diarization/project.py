"""Speaker diarization with FunASR / CAM++ (the set from the original RunPod guide)."""

from volume_cli import HookContext, ModelScopeModel, Project


class SpeakerDiarization(Project):
    """Speaker diarization: CAM++ embeddings, FSMN VAD and FunASR on CUDA 12.1."""

    name = "speaker-diarization"
    python_version = "3.10"
    models = [
        ModelScopeModel(model_id="iic/speech_campplus_speaker-diarization_common"),
        ModelScopeModel(model_id="damo/speech_fsmn_vad_zh-cn-16k-common-pytorch"),
        ModelScopeModel(model_id="damo/speech_campplus_sv_zh-cn_16k-common"),
        ModelScopeModel(model_id="damo/speech_campplus-transformer_scl_zh-cn_16k-common"),
    ]

    def after_install(self, context: HookContext) -> None:
        # funasr 0.8.8 declares `umap` where `umap-learn` is meant, which is why
        # its group is installed with no_deps; nothing else to fix up here.
        return None
