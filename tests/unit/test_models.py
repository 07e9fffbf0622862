"""Model definitions: checkpoint-compatible names and shapes, pruned-layer defaults, timm."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from chitalab.errors import UserError
from chitalab.models import CifarResNet, MobileNetV1, create_timm_model, load_checkpoint, load_model, resnet20
from chitalab.params import select_pruned
from chitalab.run.config import read_model
from tests.support import CONF, RESNET20_CHECKPOINT


def model_config(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model={name}", "paths.output_dir=/tmp/x", *overrides])
    return cfg.model


def pruned_by_default(model, name: str):
    prune = model_config(name).prune
    return select_pruned(model, list(prune.include), list(prune.exclude))


def test_resnet20_has_the_distiller_checkpoint_layout():
    state = resnet20().state_dict()
    assert len(state) == 128  # the checkpoint's state_dict has 128 entries
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["conv1.weight"] == (16, 3, 3, 3)
    assert shapes["layer2.0.conv1.weight"] == (32, 16, 3, 3)
    assert shapes["layer2.0.downsample.0.weight"] == (32, 16, 1, 1)
    assert shapes["layer3.0.downsample.1.running_var"] == (64,)
    assert shapes["fc.weight"] == (10, 64) and shapes["fc.bias"] == (10,)
    model = resnet20()
    assert sum(p.numel() for p in model.parameters()) == 272_474  # as the checkpoint README counts
    assert select_pruned(model).numel == 270_896  # every conv and fc weight


def test_resnet20_prunes_the_papers_layers_by_default():
    pruned = pruned_by_default(resnet20(), "resnet20")
    assert pruned.numel == 268_336  # stem conv, 18 block convs, fc; not the two 1x1 shortcuts
    assert len(pruned.names) == 20 and not any("downsample" in n for n in pruned.names)


@pytest.mark.skipif(not RESNET20_CHECKPOINT.is_file(), reason=f"ResNet20 checkpoint absent: {RESNET20_CHECKPOINT}")
def test_resnet20_checkpoint_loads_with_no_missing_or_unexpected_keys():
    model = CifarResNet(depth=20)
    load_checkpoint(model, RESNET20_CHECKPOINT)  # strict: any missing, unexpected or misshapen key raises
    raw = torch.load(RESNET20_CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]
    assert {k.removeprefix("module.") for k in raw} == set(model.state_dict())
    torch.testing.assert_close(model.fc.weight, raw["module.fc.weight"])


def test_mobilenetv1_has_the_str_layout_and_the_papers_weight_count():
    model = MobileNetV1()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["model.0.0.weight"] == (32, 3, 3, 3)
    assert shapes["model.1.0.weight"] == (32, 1, 3, 3)  # depthwise
    assert shapes["model.1.3.weight"] == (64, 32, 1, 1)  # pointwise
    assert shapes["model.13.4.running_mean"] == (1024,)
    assert shapes["fc.weight"] == (1000, 1024, 1, 1) and "fc.bias" not in shapes
    assert pruned_by_default(model, "mobilenetv1").numel == 4_209_088
    assert MobileNetV1(num_classes=7).eval()(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_resnet50_is_torchvisions_architecture_with_all_convs_and_fc_pruned():
    model = load_model(read_model(model_config("resnet50", "dataset=synthetic_imagenet")))
    assert "layer4.2.conv3.weight" in model.state_dict() and model.fc.out_features == 1000
    assert pruned_by_default(model, "resnet50").numel == 25_502_912


def test_a_tiny_timm_model_by_name():
    cfg = model_config("timm", "model.name=test_efficientnet", "dataset=synthetic")
    assert OmegaConf.to_container(cfg.net, resolve=True)["name"] == "test_efficientnet"
    model = load_model(read_model(cfg)).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)  # the synthetic data set's 4 classes
    assert select_pruned(model).numel > 0


def test_unknown_timm_name_is_refused_with_close_matches():
    with pytest.raises(UserError, match=r"model.name='resnet5' is not a timm model.*close matches: .*resnet50"):
        create_timm_model("resnet5")


def test_unavailable_pretrained_weights_are_a_user_error(monkeypatch):
    import timm

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("Name or service not known")
        return create(name, pretrained=False, **kwargs)

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(UserError, match="model.pretrained=true but timm could not load .*model.checkpoint"):
        create_timm_model("test_efficientnet", pretrained=True)


def test_pretrained_weights_for_another_class_count_are_warned_about(monkeypatch, caplog):
    import timm

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained=False, **kw: create(name, **kw))
    model = create_timm_model("test_efficientnet", num_classes=10, pretrained=True)
    assert model.pretrained_cfg["num_classes"] == 1000
    assert "classify 1000 classes, the data set has 10; the classifier head is new and random" in caplog.text
    caplog.clear()
    create_timm_model("test_efficientnet", num_classes=1000, pretrained=True)
    assert "classifier head" not in caplog.text


def test_pretrained_and_a_checkpoint_together_are_refused():
    cfg = model_config("timm", "model.name=test_efficientnet", "model.pretrained=true", "model.checkpoint=x.pt")
    with pytest.raises(UserError, match="choose one weight source"):
        load_model(read_model(cfg))
