"""Small GPT models for demos, tests and benchmarks.

``GPT`` is a plain ``torch.nn.Module`` (no Composer needed); ``ComposerGPT`` wraps it as a
``composer.models.ComposerModel`` and is imported lazily so this package works without Composer.
"""

from slwdata.demo.models.gpt import CONFIGS, GPT, GPTConfig, lm_loss

__all__ = ["CONFIGS", "GPT", "GPTConfig", "lm_loss", "ComposerGPT"]


def __getattr__(name: str):
    if name == "ComposerGPT":
        from slwdata.demo.models.composer_gpt import ComposerGPT

        return ComposerGPT
    raise AttributeError(name)
