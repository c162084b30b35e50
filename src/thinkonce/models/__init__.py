"""Reference networks of the reproduced experiments (DESIGN.md section 4)."""

from thinkonce.models.acc_seizure import ACCSeizureNet, acc_seizure
from thinkonce.models.eeg_seizure import EEGSeizureNet, eeg_seizure
from thinkonce.models.ppg_hr import PPGHeartRateNet, ppg_hr
from thinkonce.models.ppg_hr_real import PPGHeartRateRealNet
from thinkonce.models.running_norm import CausalRunningNorm

__all__ = ["PPGHeartRateNet", "ppg_hr", "PPGHeartRateRealNet", "CausalRunningNorm", "EEGSeizureNet", "eeg_seizure", "ACCSeizureNet", "acc_seizure"]
