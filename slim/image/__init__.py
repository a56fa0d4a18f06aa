"""Reading the original image: its filesystem index (rootfs), ELF files and package databases."""
