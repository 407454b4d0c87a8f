"""Node registry. Node modules import torch only inside their functions, so this stays cheap."""

from .inference import SONIC_Inference
from .lipsync_correct import LipSyncCorrect
from .model_loader import SONIC_ModelLoader
from .pre_data import SONIC_PreData
from .text_to_speech import SONIC_TextToSpeech
from .video_encode import VideoEncode

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "SONIC_ModelLoader": SONIC_ModelLoader,
    "SONIC_PreData": SONIC_PreData,
    "SONIC_Inference": SONIC_Inference,
    "LipSyncCorrect": LipSyncCorrect,
    "VideoEncode": VideoEncode,
    "SONIC_TextToSpeech": SONIC_TextToSpeech,
}

NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "SONIC_ModelLoader": "Sonic Model Loader",
    "SONIC_PreData": "Sonic Prepare Face + Audio",
    "SONIC_Inference": "Sonic Inference",
    "LipSyncCorrect": "Lip-Sync Correct",
    "VideoEncode": "Video Encode (MP4)",
    "SONIC_TextToSpeech": "Sonic Text to Speech",
}
