import sys
from pathlib import Path
import torch, numpy as np
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from hydra import compose, initialize_config_dir
from voiceconv.images.experiments.common import data_of, loop_of
from voiceconv.images.experiments.outliers import _as_tensors
from voiceconv.images.loops import SmallClassifier, fit_classifier, batched
from voiceconv.images.data.sources import TensorImages
from voiceconv.images.metrics import auroc
torch.set_num_threads(1)
heldn = sys.argv[1]
with initialize_config_dir(config_dir=str(ROOT / "conf" / "images"), version_base="1.3"):
    cfg = compose("config", overrides=["experiment=gans", "size=small", "seed=0"])
sets = data_of(cfg); train, test = _as_tensors(sets.train), _as_tensors(sets.test)
held = sets.classes.index(heldn)
keep = [c for c in range(5) if c != held]; remap = torch.full((5,), -1, dtype=torch.long); remap[keep] = torch.arange(4)
tr = train.select(train.labels != held); tr = TensorImages(tr.images, remap[tr.labels])
torch.manual_seed(0); clf = SmallClassifier(1, 4, 16); fit_classifier(clf, tr, loop_of(cfg, "classifier"), label_index=-1); clf.eval()
lg = batched(clf, test.images, device="cpu")
msp = -torch.softmax(lg, 1).max(1).values.numpy(); en = -torch.logsumexp(lg, 1).numpy()
lab = test.labels.numpy(); inl = lab != held
print(heldn, "MSP", round(auroc(msp[inl], msp[~inl]), 3), "energy", round(auroc(en[inl], en[~inl]), 3))
area = test.images.flatten(1).sum(1).numpy()
q = np.quantile(area, [0, .25, .5, .75, 1.0])
for i in range(4):
    m = (area >= q[i]) & (area <= q[i+1])
    if (m & ~inl).any(): print(f"area {q[i]:.0f}-{q[i+1]:.0f}: MSP {auroc(msp[m & inl], msp[m & ~inl]):.3f}")
