"""The shared generative core: plain ``nn.Module``s (all :class:`SavableModule`).

Image users import from here::

    from voiceconv.models import VAE, BetaVAE, DBVAE, GAN, ConditionalGAN, Pix2Pix, CycleGAN, DDPM

The voice-conversion models built from these pieces live in :mod:`voiceconv.models.vc`;
the image side's data, loops, metrics and experiments in :mod:`voiceconv.images`
(which imports this package, never the other way round).
Every model saves and loads itself with :func:`save_model` / :func:`load_model`.
"""

from voiceconv.models.autoencoder import Autoencoder
from voiceconv.models.base import SavableModule, load_model, save_model
from voiceconv.models.blocks import (
    ConvNormAct,
    GatedConv,
    GatedUpsample,
    PatchDiscriminator,
    PixelShuffle1d,
    PixelUnshuffle1d,
    ResidualBlock,
    maybe_spectral_norm,
    norm_layer,
)
from voiceconv.models.cgan import ConditionalGAN
from voiceconv.models.cyclegan import CycleGAN, GeneratorOutput, ResnetGenerator
from voiceconv.models.dbvae import DBVAE, DBVAEOutput
from voiceconv.models.diffusion import DDPM, UNet
from voiceconv.models.encoders import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from voiceconv.models.gan import GAN, DCGANDiscriminator, DCGANGenerator, define_D, define_G
from voiceconv.models.image_pool import ImagePool
from voiceconv.models.init import init_weights
from voiceconv.models.latent_tools import (
    histogram_sampling_weights,
    image_grid,
    kl_divergence,
    traverse_latent,
)
from voiceconv.models.losses import GANLoss, gradient_penalty
from voiceconv.models.pix2pix import Pix2Pix, UNetGenerator
from voiceconv.models.pixelcnn import GatedPixelCNN, LocalPixelCNN, PixelCNN
from voiceconv.models.progressive import ProgressiveGAN
from voiceconv.models.vae import VAE, BetaVAE, ConditionalVAE, VAEOutput

DCGAN = GAN  # the DCGAN generator/discriminator pair with a selectable loss

__all__ = [
    "DBVAE", "DCGAN", "DDPM", "GAN", "GatedPixelCNN", "LocalPixelCNN", "PixelCNN", "UNet", "VAE", "Autoencoder", "BetaVAE", "ConditionalGAN", "ConditionalVAE",
    "ConvDecoder", "ConvEncoder", "ConvNormAct", "CycleGAN", "DBVAEOutput", "DCGANDiscriminator",
    "DCGANGenerator", "GANLoss", "GatedConv", "GatedUpsample", "GeneratorOutput", "ImagePool",
    "MLPDecoder", "MLPEncoder", "PatchDiscriminator", "Pix2Pix", "PixelShuffle1d", "PixelUnshuffle1d",
    "ProgressiveGAN", "ResidualBlock", "ResnetGenerator", "SavableModule", "UNetGenerator",
    "VAEOutput", "define_D", "define_G", "gradient_penalty", "histogram_sampling_weights",
    "image_grid", "init_weights", "kl_divergence", "load_model", "maybe_spectral_norm", "norm_layer",
    "save_model", "traverse_latent",
]
