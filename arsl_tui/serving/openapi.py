"""The OpenAPI 3.0 document of the gateway's public API (served at `/openapi.json`).

Written by hand: the API is small and fixed, and the document is what clients and schemathesis hold
the gateway to, so every status the gateway can answer is listed with its body. The admin API is
left out on purpose: it is for `arsl` on the same machine, not for clients.
"""

from __future__ import annotations

from typing import Any

from arsl_tui import __version__
from arsl_tui.serving.auth import HEADER


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    catalogue = {
        401: _error(f"the {HEADER} header is missing or not a valid key"),
        408: _error("the body arrived too slowly ([gateway] body_min_kb_per_s, body_grace_s, body_timeout_s)"),
        413: _error("the body is larger than the gateway accepts ([gateway] max_body_kb)"),
        415: _error("the Content-Type holds no image"),
        422: _error("the bytes are no readable image, or the body is malformed; the error says which"),
        429: _error("a call limit (per key, per address or overall) is spent", retry_after=True),
        500: _error("an unexpected failure; the gateway log has details"),
        503: _error("too many images wait for inference; retry shortly", retry_after=True),
    }
    return {str(status): catalogue[status] for status in statuses}


_BINARY = {"type": "string", "format": "binary"}
_IMAGE_BODY = {
    "image/jpeg": {"schema": _BINARY},
    "image/png": {"schema": _BINARY},
    "application/octet-stream": {"schema": _BINARY},
}


def openapi_document() -> dict[str, Any]:
    predict_errors = _errors(401, 408, 413, 415, 422, 429, 500, 503)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "ArSL inference gateway",
            "version": __version__,
            "description": "Arabic Sign Language letter recognition: the local stand-in for a ModelArts "
            "real-time service behind API Gateway (simple authentication with "
            f"{HEADER}).",
        },
        "servers": [{"url": "/"}],
        "security": [{"AppCode": []}],
        "paths": {
            "/v1/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Classify one image",
                    "requestBody": {
                        "required": True,
                        "content": {
                            **_IMAGE_BODY,
                            "multipart/form-data": {
                                "schema": {"type": "object", "properties": {"image": _BINARY}, "required": ["image"]}
                            },
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "image": {
                                            "type": "string",
                                            "format": "byte",
                                            "description": "base64 image bytes",
                                        }
                                    },
                                    "required": ["image"],
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "the prediction",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}},
                        },
                        **predict_errors,
                    },
                }
            },
            "/v1/predict/batch": {
                "post": {
                    "operationId": "predictBatch",
                    "summary": "Classify several images with one model version",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"images": {"type": "array", "items": _BINARY, "maxItems": 64}},
                                    "required": ["images"],
                                }
                            },
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "images": {
                                            "type": "array",
                                            "items": {"type": "string", "format": "byte"},
                                            "minItems": 1,
                                            "maxItems": 64,
                                        }
                                    },
                                    "required": ["images"],
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "one prediction per image, in order",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/BatchPrediction"}}
                            },
                        },
                        **predict_errors,
                    },
                }
            },
            "/v1/feedback": {
                "post": {
                    "operationId": "feedback",
                    "summary": "Report the true label of an answered request",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["request_id", "label"],
                                    "properties": {
                                        "request_id": {"type": "string"},
                                        "label": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "counted",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/FeedbackResult"}}
                            },
                        },
                        "404": _error("no answered request with that id is remembered"),
                        "409": _error("that request has feedback already"),
                        **_errors(401, 408, 413, 415, 422, 429, 500),
                    },
                }
            },
            "/v1/model/info": {
                "get": {
                    "operationId": "modelInfo",
                    "summary": "The versions served, their weights and provenance",
                    "responses": {
                        "200": {
                            "description": "the deployment",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Deployment"}}},
                        },
                        **_errors(401, 429, 500),
                    },
                }
            },
            "/v1/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness and the current weights",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "serving",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                        }
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics, labelled by model version",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"AppCode": {"type": "apiKey", "in": "header", "name": HEADER}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "code": {"type": "string"},
                        "request_id": {"type": "string"},
                    },
                },
                "Score": {
                    "type": "object",
                    "required": ["label", "class_index", "confidence"],
                    "properties": {
                        "label": {"type": "string"},
                        "class_index": {"type": "integer", "minimum": 0},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                },
                "Prediction": {
                    "type": "object",
                    "required": ["request_id", "model_version", "label", "class_index", "confidence", "top5"],
                    "properties": {
                        "request_id": {"type": "string"},
                        "model_version": {"type": "string"},
                        "label": {"type": "string"},
                        "class_index": {"type": "integer", "minimum": 0},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                        "top5": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Score"},
                            "minItems": 1,
                            "maxItems": 5,
                        },
                    },
                },
                "BatchPrediction": {
                    "type": "object",
                    "required": ["request_id", "model_version", "results"],
                    "properties": {
                        "request_id": {"type": "string"},
                        "model_version": {"type": "string"},
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
                    },
                },
                "FeedbackResult": {
                    "type": "object",
                    "required": ["request_id", "model_version", "predicted", "label", "correct"],
                    "properties": {
                        "request_id": {"type": "string"},
                        "model_version": {"type": "string"},
                        "predicted": {"type": "string"},
                        "label": {"type": "string"},
                        "correct": {"type": "boolean"},
                    },
                },
                "Weights": {
                    "type": "object",
                    "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100},
                },
                "Deployment": {
                    "type": "object",
                    "required": ["stable", "weights", "versions"],
                    "properties": {
                        "stable": {"type": "string"},
                        "canary": {"type": "string", "nullable": True},
                        "weights": {"$ref": "#/components/schemas/Weights"},
                        "versions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["version", "classes"],
                                "properties": {
                                    "version": {"type": "string"},
                                    "classes": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "weights"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok"]},
                        "weights": {"$ref": "#/components/schemas/Weights"},
                        "stable": {"type": "string"},
                        "canary": {"type": "string", "nullable": True},
                        "uptime_s": {"type": "number"},
                        "queue_depth": {"type": "integer"},
                    },
                },
            },
        },
    }


__all__ = ["openapi_document"]
