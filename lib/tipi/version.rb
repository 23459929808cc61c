# frozen_string_literal: true

module Tipi
  VERSION = '0.1.0'
end
