"""Probe: do two judges (same data, different initialisation seeds) agree on a probe
cGAN's samples as they do on real test shapes?"""
import sys
import json
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from hydra import compose, initialize_config_dir
from voiceconv.images.experiments.common import data_of, loop_of, in_chunks, take
from voiceconv.images.loops import SmallClassifier, fit_classifier, batched, to_unit
from voiceconv.models.cgan import ConditionalGAN
tag, gw, dw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=gans", "size=small", "seed=0"])
sets = data_of(cfg)
judges = []
for s in (0, 1, 2):
    torch.manual_seed(100 + s)
    clf = SmallClassifier(1, sets.num_classes, width=16)
    fit_classifier(clf, sets.train, loop_of(cfg, "classifier", seed_offset=100 + s), label_index=-1)
    judges.append(clf.eval())
cg = ConditionalGAN(num_classes=5, latent_dim=64, channels=1, image_size=32, base_channels=16 * gw, gan_mode="hinge",
                    g_norm="conditional_batch", d_norm="batch", d_base_channels=16 * dw, aux_weight=1.0)
sd = torch.load(f"runs/images/probes/cg_{tag}/cg.pt", weights_only=True)
cg.load_state_dict({k: v for k, v in sd.items() if k in cg.state_dict()}, strict=False)
cg.eval()
labels = torch.arange(2000) % 5
torch.manual_seed(1)
fakes = in_chunks(lambda lab: to_unit(cg.sample(lab)), labels)
x, y = take(sets.test)[0], take(sets.test)[-1]
res = {"tag": tag}
for name, imgs, lab in (("real", x, y), ("fake", fakes, labels)):
    preds = [batched(j, imgs, device="cpu").argmax(1) for j in judges]
    res[name] = {"accuracy": [round(float((p == lab).float().mean()), 4) for p in preds],
                 "agreement_01_02_12": [round(float((preds[a] == preds[b]).float().mean()), 4) for a, b in ((0, 1), (0, 2), (1, 2))]}
print(json.dumps(res))
