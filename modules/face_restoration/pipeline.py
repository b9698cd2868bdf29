"""Detect, align, restore and paste back faces (extras.md §3.2), with every model injectable so the
geometry can be tested with fake detectors and nets.

detect(bgr) -> list of 5×2 landmark arrays (eyes, nose, mouth corners) in image pixels
restore(bgr 512×512 uint8) -> bgr 512×512 uint8
face_mask(bgr 512×512 uint8) -> float mask 512×512 in [0,1] (1 = face)
"""
import cv2
import numpy as np

FACE_SIZE = 512
# facexlib's five-point FFHQ template for 512 px faces
FFHQ_TEMPLATE = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                          [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float32)
BORDER_GREY = (135, 133, 132)
MIN_EYE_DISTANCE = 5


def align_matrix(landmarks: np.ndarray) -> np.ndarray:
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), FFHQ_TEMPLATE, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks: fall back to the least-squares similarity
        matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), FFHQ_TEMPLATE)
    return matrix


def restore_faces_bgr(bgr: np.ndarray, detect, restore, face_mask) -> tuple[np.ndarray, int]:
    """The image with every detected face restored, and the number of faces."""
    height, width = bgr.shape[:2]
    faces = [lm for lm in detect(bgr)
             if np.linalg.norm(np.asarray(lm[0]) - np.asarray(lm[1])) >= MIN_EYE_DISTANCE]
    if not faces:
        return bgr, 0
    out = bgr.astype(np.float32)
    for landmarks in faces:
        matrix = align_matrix(landmarks)
        if matrix is None:
            continue
        crop = cv2.warpAffine(bgr, matrix, (FACE_SIZE, FACE_SIZE), borderMode=cv2.BORDER_CONSTANT,
                              borderValue=BORDER_GREY)
        restored = restore(crop)
        inverse = cv2.invertAffineTransform(matrix)
        face = cv2.warpAffine(restored, inverse, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32)
        mask = face_mask(restored).astype(np.float32)
        mask = cv2.warpAffine(mask, inverse, (width, height), flags=cv2.INTER_AREA,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)[:, :, None]
        out = mask * face + (1 - mask) * out
    return np.clip(out.round(), 0, 255).astype(np.uint8), len(faces)


def soft_mask(parsing: np.ndarray) -> np.ndarray:
    """Face classes of a 19-class CelebAMask-HQ parsing -> blurred mask with a zeroed 10 px border."""
    # 0 background, 14 neck, 16 cloth, 17 hair, 18 hat are outside the face
    mask = np.ones(parsing.shape, np.float32)
    for label in (0, 14, 16, 17, 18):
        mask[parsing == label] = 0
    mask = cv2.GaussianBlur(mask, (101, 101), 11)
    mask = cv2.GaussianBlur(mask, (101, 101), 11)
    border = 10
    mask[:border, :] = mask[-border:, :] = 0
    mask[:, :border] = mask[:, -border:] = 0
    return mask / max(float(mask.max()), 1e-6) if mask.max() > 1 else mask


def border_mask(size: int = FACE_SIZE, border: int = 10) -> np.ndarray:
    """Full face mask without parsing: ones with a zeroed border."""
    mask = np.ones((size, size), np.float32)
    mask[:border, :] = mask[-border:, :] = 0
    mask[:, :border] = mask[:, -border:] = 0
    return mask
